"""Actions layer: fleet paging over 2,000 devices, setup plan/apply, package and deploy, in the sandbox.

Ratios compare our functions with plain boto3 doing the same calls in the same process, so they
show the layer's own overhead, whatever the machine's load.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _fill_group(sb, ctx, group: str, count: int) -> None:
    iot = ctx.client("iot")
    iot.create_thing_group(thingGroupName=group)

    def register(name: str) -> None:
        iot.create_thing(thingName=name)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
        doc = {"region": ctx.region, "thingName": name, "status": "HEALTHY", "platform": "linux",
               "architecture": "amd64", "installedComponents": [], "effectiveDeployments": []}
        urllib.request.urlopen(urllib.request.Request(f"{sb.endpoint_url}/_sandbox/greengrass/report",
                                                      data=json.dumps(doc).encode(), method="POST"), timeout=30).read()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register, [f"{group}-{i:04d}" for i in range(count)]))


def _raw_fleet(ctx, group: str) -> int:
    """The same reads list_fleet makes, with plain boto3 pagination: the baseline."""
    iot, gg = ctx.client("iot"), ctx.client("greengrassv2")
    things = [t for page in iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=group)
              for t in page["things"]]
    arn = iot.describe_thing_group(thingGroupName=group)["thingGroupArn"]
    cores = [d for page in gg.get_paginator("list_core_devices").paginate(
        thingGroupArn=arn, PaginationConfig={"PageSize": 100}) for d in page["coreDevices"]]
    return len(set(things) | {c["coreDeviceThingName"] for c in cores})


def run(report) -> None:
    from actions import deploy, fleet, setup
    from actions import package as pk
    from actions.context import Context
    from fixtures.models import ensure_model, sample_images
    from fixtures.sandbox import Sandbox

    with tempfile.TemporaryDirectory() as tmp, Sandbox.start(Path(tmp) / "sb", broker=False) as sb:
        ctx = Context.for_sandbox(sb.endpoint_url, stack=f"bench{uuid.uuid4().hex[:4]}", state_dir=Path(tmp) / "st",
                                  sandbox_state_dir=sb.state_dir)

        # Setup: plan (reads only), apply, and the second apply's mutating calls. The first call of
        # each service builds moto's backend (IAM loads every managed policy): warm them up first.
        start = time.perf_counter()
        for service in ("sts", "iam", "s3", "ec2", "ssm", "iot"):
            getattr(ctx.client(service), {"sts": "get_caller_identity", "iam": "list_roles", "s3": "list_buckets",
                                          "ec2": "describe_instances", "ssm": "describe_parameters",
                                          "iot": "list_thing_groups"}[service])()
        report("sandbox warm-up (first call of 6 services)", time.perf_counter() - start, "s")
        start = time.perf_counter()
        changes = setup.plan(ctx)
        elapsed = time.perf_counter() - start
        report(f"setup plan ({len(changes)} steps, read only)", elapsed, "s", target="< 5 s", ok=elapsed < 5)
        start = time.perf_counter()
        list(setup.apply(ctx))
        elapsed = time.perf_counter() - start
        report("setup apply from nothing", elapsed, "s", target="< 30 s", ok=elapsed < 30)
        names: list[str] = []
        ctx.register("before-call.*.*", lambda model, **kw: names.append(model.name))
        start = time.perf_counter()
        list(setup.apply(ctx))
        second = time.perf_counter() - start
        mutating = [n for n in names if not n.startswith(("Get", "List", "Describe", "Head"))]
        report("setup second apply", second, "s")
        report("setup second apply: mutating calls", len(mutating), "calls", target="0", ok=not mutating)

        # Fleet: 2,000 devices, ours vs plain boto3 paging.
        group = "benchfleet"
        start = time.perf_counter()
        _fill_group(sb, ctx, group, 2000)
        report("register 2,000 things + core devices (8 threads)", time.perf_counter() - start, "s")
        timings = {"raw": [], "ours": []}
        for _ in range(3):
            start = time.perf_counter()
            raw = _raw_fleet(ctx, group)
            timings["raw"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = len(fleet.list_fleet(ctx, group))
            timings["ours"].append(time.perf_counter() - start)
        assert raw == ours == 2000, (raw, ours)
        best_raw, best_ours = min(timings["raw"]), min(timings["ours"])
        report("fleet list 2,000 devices", best_ours, "s", ratio=best_ours / best_raw, target="ratio < 1.3",
               ok=best_ours / best_raw < 1.3)
        report("fleet list throughput", 2000 / best_ours, "devices/s")

        # Package and deploy to one local core device.
        root = ensure_model()
        images = next(iter(sample_images(root).values())).parent
        bucket = setup.outputs(ctx)["bucket"]
        start = time.perf_counter()
        done = list(pk.package(ctx, pk.PackageSpec(root / "onnx", bucket=bucket, images_dir=images,
                                                   python=sys.executable)))[-1]
        elapsed = time.perf_counter() - start
        report("package (archive, upload, publish 2 components)", elapsed, "s", target="< 20 s", ok=elapsed < 20)
        device = "benchdevice"
        sb.add_device(device, setup.SetupConfig().thing_group_name)
        start = time.perf_counter()
        dep = deploy.create(ctx, setup.SetupConfig().thing_group_name,
                            {pk.MODEL_COMPONENT: done.data["model"]["version"],
                             pk.APP_COMPONENT: done.data["app"]["version"]})
        final = list(deploy.follow(ctx, dep, timeout=180))[-1]
        report("deploy to 1 device until SUCCEEDED", time.perf_counter() - start, "s", target="< 60 s",
               ok=final.data["devices"].get(device) == "SUCCEEDED")
        list(setup.destroy(ctx))
