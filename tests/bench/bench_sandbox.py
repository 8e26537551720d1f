"""Sandbox: start-up until the endpoint answers, first calls, request rates, a device, a Neo compile.

Start-up is measured from `Sandbox.start()` to the first answered STS call (the server is a child
process, so it includes the interpreter and moto's import); its ratio is against the bare cost of a
child interpreter importing moto's server and werkzeug, measured here the same way. Request rates are
against moto's own STS GetCallerIdentity on the same server, once the server's background warm-up
(building moto's service apps, 1 s after start) is over.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

STARTS = 5
CALLS = 200


def _import_baseline() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import moto.server, werkzeug.serving"], check=True, timeout=120)
    return time.perf_counter() - start


def _rate(fn, n: int = CALLS) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def run(report) -> None:
    from fixtures.sandbox import Sandbox

    baseline = statistics.median(_import_baseline() for _ in range(3))
    starts, with_broker = [], []
    for i in range(STARTS):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            with Sandbox.start(Path(tmp) / "s", broker=(i == 0)) as sb:
                sb.client("sts").get_caller_identity()
                (with_broker if i == 0 else starts).append(time.perf_counter() - t0)
    median = statistics.median(starts)
    report("start-up to first STS answer (median of 4)", median, "s", ratio=median / baseline,
           target="< 3 s", ok=median < 3.0)
    report("start-up with the MQTT broker, to first STS answer", with_broker[0], "s",
           target="< 3 s", ok=with_broker[0] < 3.0)
    report("baseline: child python importing moto.server", baseline, "s")

    with Sandbox.start(broker=False) as sb:
        t0 = time.perf_counter()
        sb.wait_warm()
        report("background warm-up of moto's services after start", time.perf_counter() - t0, "s")
        t0 = time.perf_counter()
        sb.client("iam").list_policies(Scope="AWS", MaxItems=1)
        report("first IAM ListPolicies after warm-up (new client)", (time.perf_counter() - t0) * 1000, "ms")
        sts, gg = sb.client("sts"), sb.client("greengrassv2")
        base_rate = _rate(sts.get_caller_identity)
        gg_rate = _rate(gg.list_components)
        report("moto STS GetCallerIdentity (baseline)", base_rate, "calls/s")
        report("Greengrass ListComponents (our layer)", gg_rate, "calls/s", ratio=gg_rate / base_rate)

        t0 = time.perf_counter()
        sb.add_device(f"bench-{uuid.uuid4().hex[:6]}", "bench")
        report("device add until HEALTHY", time.perf_counter() - t0, "s", target="< 10 s",
               ok=time.perf_counter() - t0 < 10)

        from fixtures.models import ensure_model

        tar = ensure_model() / "model.tar.gz"
        s3, iam, sm = sb.client("s3"), sb.client("iam"), sb.client("sagemaker")
        s3.create_bucket(Bucket="bench-neo")
        s3.upload_file(str(tar), "bench-neo", "model.tar.gz")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
        role = iam.create_role(RoleName="bench-neo", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        t0 = time.perf_counter()
        sm.create_compilation_job(
            CompilationJobName="bench", RoleArn=role,
            InputConfig={"S3Uri": "s3://bench-neo/model.tar.gz", "DataInputConfig": '{"input0": [1, 3, 224, 224]}',
                         "Framework": "PYTORCH"},
            OutputConfig={"S3OutputLocation": "s3://bench-neo/out", "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}},
            StoppingCondition={"MaxRuntimeInSeconds": 900})
        while sm.describe_compilation_job(CompilationJobName="bench")["CompilationJobStatus"] not in (
                "COMPLETED", "FAILED", "STOPPED"):
            time.sleep(0.1)
        status = sm.describe_compilation_job(CompilationJobName="bench")["CompilationJobStatus"]
        report(f"Neo compile of the fixture model ({status})", time.perf_counter() - t0, "s")
