"""Compile, package, deploy, fleet, logs and leftovers against the sandbox (real moto, real local Neo,
real local core devices running the published recipes, real broker).

The sandbox is shared by the whole session: every name here is unique to this module's stack.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from actions import compile as comp
from actions import deploy, fleet, leftovers, logs, setup
from actions import package as pk
from actions.context import Context
from actions.errors import CompileError, ConfigError, NotFound
from actions.progress import DONE, FAILED

UID = uuid.uuid4().hex[:6]
GROUP = f"grp-{UID}"


@pytest.fixture(scope="module")
def stack(sandbox, tmp_path_factory):
    """A stack of our own in the shared sandbox: role, bucket and thing group (setup apply), torn down after."""
    ctx = Context.for_sandbox(sandbox.endpoint_url, stack=f"pipe{UID}", state_dir=tmp_path_factory.mktemp("state"),
                              sandbox_state_dir=sandbox.state_dir)
    cfg = setup.SetupConfig(role_name=f"EdgeRole{UID}", bucket=f"edge-console-test-{UID}", thing_group_name=GROUP,
                            thing_name=f"core-{UID}", tes_role_name=f"Tes{UID}", tes_role_alias_name=f"TesAlias{UID}",
                            instance_name=f"edge-server-{UID}",
                            # The devices are stopped by then; one may still look HEALTHY for a few seconds.
                            teardown_timeout_s=10)
    list(setup.apply(ctx, cfg))
    yield ctx, cfg
    list(setup.destroy(ctx, cfg))


@pytest.fixture
def add_device(sandbox):
    """Start local core devices for one test and stop them after it (their edge clients use CPU)."""
    started = []

    def add(name: str, group: str = GROUP):
        started.append(name)
        return sandbox.add_device(name, group)

    yield add
    for name in started:
        if name in sandbox.devices:
            sandbox.remove_device(name)


@pytest.fixture(scope="module")
def published(stack, model_dir, sample_images):
    """Two published versions of both components (1.0.0 then 1.0.1), from the fixture model."""
    ctx, cfg = stack
    images = next(iter(sample_images.values())).parent
    out = []
    for _ in range(2):
        last = list(pk.package(ctx, pk.PackageSpec(model_dir, bucket=cfg.bucket, images_dir=images,
                                                  python=_python())))[-1]
        out.append(last.data)
    return out


def _python() -> str:
    import sys

    return sys.executable


def test_neo_compiles_and_the_artifact_runs_here(stack, model_tar, tmp_path, calls):
    ctx, cfg = stack
    # No role given: the stack's compilation role, as setup recorded it (not the edge server's role).
    job = comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=model_tar, bucket=cfg.bucket,
                      job_name=f"neo-{UID}")
    events = list(comp.compile_with_neo(ctx, job))
    described = ctx.client("sagemaker").describe_compilation_job(CompilationJobName=f"neo-{UID}")
    assert described["RoleArn"] == setup.outputs(ctx, cfg)["compile_role_arn"]
    assert described["RoleArn"] == f"arn:aws:iam::{ctx.account_id}:role/EdgeRole{UID}-NeoCompilation"
    created = [e for e in events if e.data and e.data.get("role_arn")]
    assert created and f"(role EdgeRole{UID}-NeoCompilation)" in created[0].message
    statuses = [e.data.get("status") for e in events if e.step == "compile" and e.data and "status" in e.data]
    assert statuses[-1] == "COMPLETED" and events[-1].state == DONE
    uploads = [e for e in events if e.step == "upload"]
    assert uploads[-1].percent == 20.0 and uploads[-1].data["uri"].startswith(f"s3://{cfg.bucket}/models/")
    artifact = events[-1].data["artifact"]
    assert artifact.startswith(f"s3://{cfg.bucket}/compiled/neo-{UID}/")
    out = comp.download_artifact(ctx, artifact, tmp_path / "compiled")
    assert (out / "model.onnx").is_file() and (out / "manifest.json").is_file()
    # The same model again: no second upload.
    calls.attach(ctx)
    list(comp.upload_model(ctx, model_tar, bucket=cfg.bucket))
    assert not {"PutObject", "CreateMultipartUpload", "UploadPart"} & set(calls.names)


def test_a_failed_job_shows_neos_failure_reason(stack, tmp_path):
    ctx, cfg = stack
    bad = tmp_path / "model.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        data = b"this is not a TorchScript model"
        info = tarfile.TarInfo("model.pth")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    job = comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=bad, bucket=cfg.bucket,
                      role_name=cfg.compile_role, job_name=f"bad-{UID}")
    events = []
    with pytest.raises(CompileError) as err:
        for event in comp.compile_with_neo(ctx, job):
            events.append(event)
    reason = ctx.client("sagemaker").describe_compilation_job(CompilationJobName=f"bad-{UID}")["FailureReason"]
    assert reason and reason in str(err.value)
    assert events[-1].state == FAILED and events[-1].data["reason"] == reason


def test_bad_compile_requests_are_refused_before_any_call(stack, model_tar):
    with pytest.raises(ConfigError, match="data_input_config"):
        comp.NeoJob(data_input_config={"input0": [1, 3, -1, 224]}, model_tar=model_tar).validate()
    with pytest.raises(ConfigError, match="does not exist"):
        comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=Path("/nope.tar.gz")).validate()
    with pytest.raises(ConfigError, match="job_name"):
        comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=model_tar, job_name="a_b").validate()


def test_package_publishes_both_components_with_real_uris(stack, published):
    ctx, cfg = stack
    first, second = published
    assert (first["model"]["version"], second["model"]["version"]) == ("1.0.0", "1.0.1")
    assert (first["app"]["version"], second["app"]["version"]) == ("1.0.0", "1.0.1")
    gg, s3 = ctx.client("greengrassv2"), ctx.client("s3")
    recipe = json.loads(gg.get_component(arn=second["app"]["arn"], recipeOutputFormat="JSON")["recipe"])
    assert recipe["ComponentName"] == pk.APP_COMPONENT
    assert recipe["ComponentDependencies"][pk.MODEL_COMPONENT]["VersionRequirement"] == "=1.0.1"
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults["topic"] == "gg/sageMakerEdgeManager/image-classification"
    assert (defaults["threshold"], defaults["top_k"]) == (0.3, 5)
    assert "edge_client.cli run --config" in recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    for part in ("model", "app"):
        uri = second[part]["artifact_uri"]
        bucket, key = uri[5:].split("/", 1)
        assert bucket == cfg.bucket and s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
        saved = json.loads(Path(second[part]["recipe_path"]).read_text())
        stored = json.loads(gg.get_component(arn=second[part]["arn"], recipeOutputFormat="JSON")["recipe"])
        # Greengrass adds each artifact's digest when it registers the version, as AWS does.
        for artifact in stored["Manifests"][0]["Artifacts"]:
            if "Digest" in artifact:
                import base64
                import hashlib

                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                assert artifact.pop("Digest") == base64.b64encode(hashlib.sha256(body).digest()).decode()
                assert artifact.pop("Algorithm") == "SHA-256"
        assert saved == stored
    assert pk.versions(ctx, pk.MODEL_COMPONENT)[-2:] == ["1.0.0", "1.0.1"]


def test_versions_bump_and_bad_specs(tmp_path):
    assert pk.next_version([]) == "1.0.0"
    assert pk.next_version(["1.0.9", "1.0.10", "0.9.0"]) == "1.0.11"
    assert pk.next_version(["1.2.3"], "minor") == "1.3.0" and pk.next_version(["1.2.3"], "major") == "2.0.0"
    with pytest.raises(ConfigError, match="compile first"):
        pk.PackageSpec(tmp_path / "missing").validate()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="threshold"):
        pk.PackageSpec(tmp_path / "m", settings={"threshold": 3, "source": "camera:0"}).validate()
    with pytest.raises(ConfigError, match="images"):
        pk.PackageSpec(tmp_path / "m").validate()


def test_deploy_follow_rollback_and_fleet(sandbox, stack, published, add_device):
    ctx, cfg = stack
    device = f"dev-{UID}"
    add_device(device)
    first, second = published
    v1 = {pk.MODEL_COMPONENT: first["model"]["version"], pk.APP_COMPONENT: first["app"]["version"]}
    v2 = {pk.MODEL_COMPONENT: second["model"]["version"], pk.APP_COMPONENT: second["app"]["version"]}

    # Watch the runbook's topic while the first deployment lands: the device's edge client must
    # classify the shipped images and publish top-5 predictions there.
    from actions.messages.prediction import PREDICTION_TOPIC, parse_prediction
    from actions.mqtt import open_transport
    from actions.mqtt.base import MqttSettings

    received = []
    watcher = open_transport(MqttSettings(host=sandbox.broker.host, port=sandbox.broker.port,
                                          client_id=f"watch-{UID}"), kind="mqtt")
    watcher.connect()
    watcher.subscribe(PREDICTION_TOPIC, lambda topic, payload: received.append(parse_prediction(payload)))
    dep1 = deploy.create(ctx, GROUP, v1, merge={pk.APP_COMPONENT: {"threshold": 0.2}})
    events = list(deploy.follow(ctx, dep1, timeout=120))
    assert events[-1].state == DONE and events[-1].data["devices"] == {device: "SUCCEEDED"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [p for p in received if p.device == device]:
        time.sleep(0.2)
    watcher.close()
    mine = [p for p in received if p.device == device]
    assert mine, "no prediction from the deployed edge client"
    assert all(1 <= len(p.results) <= 5 for p in mine)
    # The deployment's configuration merge (threshold 0.2 instead of the recipe's 0.3) reached the client.
    assert all(score >= 20.0 for p in mine for _, score in p.results)
    assert "0.2 or above" in mine[0].description
    assert [e.data["status"] for e in events if e.step == device][-1] == "SUCCEEDED"
    sent = deploy.get(ctx, dep1)["components"][pk.APP_COMPONENT]["configurationUpdate"]["merge"]
    assert json.loads(sent) == {"threshold": 0.2}

    dep2 = deploy.create(ctx, GROUP, v2)
    assert list(deploy.follow(ctx, dep2, timeout=120))[-1].state == DONE
    devices = {d.name: d for d in fleet.list_fleet(ctx, GROUP, details=True)}
    installed = {c.name: c.version for c in devices[device].components}
    assert installed[pk.MODEL_COMPONENT] == "1.0.1" and devices[device].core_status == "HEALTHY"
    assert dep2 in {d.deployment_id for d in devices[device].deployments}

    dep3 = deploy.rollback(ctx, GROUP)
    assert {k: v["componentVersion"] for k, v in deploy.get(ctx, dep3)["components"].items()} == v1
    assert list(deploy.follow(ctx, dep3, timeout=120))[-1].state == DONE
    _, effective = fleet.device_details(ctx, device)
    installed, _ = fleet.device_details(ctx, device)
    assert {c.name: c.version for c in installed}[pk.MODEL_COMPONENT] == "1.0.0"
    assert [h["deploymentId"] for h in deploy.history(ctx, GROUP)][:3] == [dep3, dep2, dep1]

    # The component's log on the device, as the runbook tails it.
    lines = logs.fetch(ctx, device, pk.APP_COMPONENT, lines=50)
    assert lines and all(pk.APP_COMPONENT in line for line in lines)


def test_a_failing_install_is_followed_to_failed_with_its_reason(sandbox, stack, add_device):
    ctx, cfg = stack
    device = f"fail-{UID}"
    group = f"fail-grp-{UID}"  # its own group: the other tests' devices are stopped by now
    add_device(device, group)
    name = f"com.example.Broken{UID}"
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": "1.0.0",
              "Manifests": [{"Platform": {"os": "linux"},
                             "Lifecycle": {"Install": {"Script": "echo no disk space >&2; exit 3"}}}]}
    ctx.client("greengrassv2").create_component_version(inlineRecipe=json.dumps(recipe).encode())
    dep = deploy.create(ctx, group, {name: "1.0.0"})
    events = list(deploy.follow(ctx, dep, timeout=120))
    final = events[-1]
    assert final.state == FAILED and set(final.data["devices"].values()) == {"FAILED"}
    assert any(e.state == FAILED and e.step == device and e.data["reason"] for e in events)


def test_cancel_a_deployment(stack, published):
    ctx, _ = stack
    dep = deploy.create(ctx, GROUP, {pk.MODEL_COMPONENT: "1.0.0"})
    assert deploy.cancel(ctx, dep) == "CANCELED"
    # Read back on its own: cancel() falls back to "CANCELED" when the status is missing.
    assert deploy.get(ctx, dep)["deploymentStatus"] == "CANCELED"


def test_logs_follow_sees_new_lines(sandbox, stack, published, add_device):
    ctx, _ = stack
    device = f"logs-{UID}"
    group = f"logs-grp-{UID}"
    add_device(device, group)
    stop, seen = threading.Event(), []

    def reader():
        for line in logs.follow(ctx, device, "greengrass", lines=0, poll=0.1, stop=stop):
            seen.append(line)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    dep = deploy.create(ctx, group, {pk.MODEL_COMPONENT: "1.0.0"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(dep in line for line in seen):
        time.sleep(0.2)
    stop.set()
    thread.join(5)
    assert any(dep in line for line in seen), seen[-5:]
    with pytest.raises(NotFound, match="no device"):
        logs.fetch(ctx, "no-such-device", "greengrass")


def test_fleet_pages_through_2000_devices(sandbox, stack, calls):
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    ctx, _ = stack
    group = f"big-{UID}"
    iot = ctx.client("iot")
    iot.create_thing_group(thingGroupName=group)
    names = [f"big-{UID}-{i:04d}" for i in range(2000)]

    def register(name):
        iot.create_thing(thingName=name)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
        # Every thing also reports as a core device, the way the sandbox's local nucleus does.
        doc = {"region": ctx.region, "thingName": name, "status": "HEALTHY", "platform": "linux",
               "architecture": "amd64", "installedComponents": [], "effectiveDeployments": []}
        request = urllib.request.Request(f"{sandbox.endpoint_url}/_sandbox/greengrass/report", method="POST",
                                         data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register, names))
    calls.attach(ctx)
    devices = fleet.list_fleet(ctx, group)
    assert [d.name for d in devices] == names
    assert all(d.in_group and d.core_status in ("HEALTHY", "UNHEALTHY") for d in devices)
    assert calls.names.count("ListCoreDevices") == 20  # 100 a page, every page followed
    # moto answers ListThingsInThingGroup in one page whatever maxResults says; real IoT pages by 250.
    assert calls.names.count("ListThingsInThingGroup") >= 1


def test_fleet_merges_the_clients_status_messages(sandbox, stack, add_device):
    from actions.messages.status import build_status, encode
    from actions.mqtt import open_transport
    from actions.mqtt.base import MqttSettings

    ctx, _ = stack
    device = f"stat-{UID}"
    # A group of its own: in GROUP an earlier test's deployment would start a real edge client on
    # this device, whose retained status would replace the one this test publishes.
    group = f"stat-grp-{UID}"
    add_device(device, group)
    broker = sandbox.broker
    settings = MqttSettings(host=broker.host, port=broker.port, client_id=f"pub-{UID}")
    with open_transport(settings, kind="mqtt") as pub:
        pub.connect()
        pub.publish(f"edge-console/{device}/status", encode(build_status(
            device=device, state="running", model_name="efficientnet-lite0", model_version="1.0.1",
            images_per_s=12.5)), qos=1, retain=True).result(10)
        pub.publish(f"edge-console/outside-{UID}/status", encode(build_status(device=f"outside-{UID}",
                                                                               state="idle")), qos=1, retain=True).result(10)
        pub.publish(f"edge-console/junk-{UID}/status", b"{not json", qos=1, retain=True).result(10)
    with open_transport(MqttSettings(host=broker.host, port=broker.port, client_id=f"sub-{UID}"), kind="mqtt") as sub:
        sub.connect()
        statuses = fleet.collect_statuses(sub, wait=1.5)
    devices = {d.name: d for d in fleet.list_fleet(ctx, group, statuses=statuses)}
    mine = devices[device]
    assert mine.core_status == "HEALTHY" and mine.core_last_seen is not None
    assert mine.client.model_version == "1.0.1" and mine.client_last_seen is not None
    assert devices[f"outside-{UID}"].in_group is False and devices[f"outside-{UID}"].client.state == "idle"
    assert f"junk-{UID}" not in devices


def test_edge_manager_leftovers_found_and_removed_and_ours_kept(stack, published):
    ctx, cfg = stack
    gg, iot, s3 = ctx.client("greengrassv2"), ctx.client("iot"), ctx.client("s3")
    old = f"SagemakerEdgeManagerjob{UID}-packaging-ggv2"
    for version in ("1.0.0", "1.0.1"):
        gg.create_component_version(inlineRecipe=json.dumps({
            "RecipeFormatVersion": "2020-01-25", "ComponentName": old, "ComponentVersion": version,
            "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}}]}).encode())
    role_arn = f"arn:aws:iam::{ctx.account_id}:role/{cfg.tes_role_name}"
    iot.create_role_alias(roleAlias=f"SageMakerEdge-fleet{UID}", roleArn=role_arn)
    s3.put_object(Bucket=cfg.bucket, Key=f"edge/job{UID}-packaging-ggv2/model-1.tar.gz", Body=b"old")
    found = leftovers.find(ctx, buckets=[cfg.bucket])
    mine = [f for f in found if UID in f.name]
    assert {f.kind for f in mine} == {"component-version", "role-alias", "s3-object"}
    assert len([f for f in mine if f.kind == "component-version"]) == 2
    assert not any(f.name.startswith(pk.APP_COMPONENT) for f in found)
    events = list(leftovers.remove(ctx, mine))
    assert events[-1].state == DONE
    assert not [f for f in leftovers.find(ctx, buckets=[cfg.bucket]) if UID in f.name]
    assert pk.versions(ctx, pk.APP_COMPONENT)  # ours are still there


def test_destroy_removes_what_compile_package_and_deploy_made_for_this_stack_only(sandbox, stack, published,
                                                                                 tmp_path, add_device):
    other_ctx, _ = stack  # the module's stack: its components must survive
    uid = uuid.uuid4().hex[:6]
    ctx = Context.for_sandbox(sandbox.endpoint_url, stack=f"gone{uid}", state_dir=tmp_path,
                              sandbox_state_dir=sandbox.state_dir)
    cfg = setup.SetupConfig(role_name=f"GoneRole{uid}", bucket=f"edge-console-gone-{uid}",
                            thing_group_name=f"gone-{uid}", tes_role_name=f"GoneTes{uid}",
                            tes_role_alias_name=f"GoneAlias{uid}", instance_name=f"edge-server-{uid}")
    list(setup.apply(ctx, cfg))
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.onnx").write_bytes(b"not really a model")
    done = list(pk.package(ctx, pk.PackageSpec(artifact, model_component=f"gone.Model{uid}",
                                               app_component=f"gone.App{uid}", bucket=cfg.bucket,
                                               settings={"source": "camera:0"})))[-1].data
    device = f"gone-dev-{uid}"
    add_device(device, cfg.thing_group_name)
    dep = deploy.create(ctx, cfg.thing_group_name, {f"gone.Model{uid}": done["model"]["version"]})
    assert list(deploy.follow(ctx, dep, timeout=120))[-1].state == DONE
    assert f"gone.Model{uid}" in {c.name for c in fleet.device_details(ctx, device)[0]}
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    with pytest.raises(CompileError):
        list(comp.compile_with_neo(ctx, comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=bad,
                                                    bucket=cfg.bucket, job_name=f"gone-{uid}")))
    (published_step,) = [c for c in setup.destroy_plan(ctx, cfg) if c.step == "published"]
    assert published_step.action == setup.DELETE
    assert "1 deployments, 2 component versions, 1 compilation jobs" in published_step.summary
    events = list(setup.destroy(ctx, cfg))
    done = [e.step for e in events if e.state == DONE]
    assert done[0] == "published"  # before the role and bucket
    assert done[-1] == "compile-role"  # after its jobs, and after the edge server's role
    roles = {r["RoleName"] for r in ctx.client("iam").list_roles()["Roles"]}
    assert not {cfg.role_name, cfg.compile_role, cfg.tes_role_name} & roles
    # The device no longer runs what the stack deployed (an empty deployment went first).
    assert any("components removed from the devices of" in e.message for e in events)
    assert f"gone.Model{uid}" not in {c.name for c in fleet.device_details(ctx, device)[0]}
    assert pk.versions(ctx, f"gone.Model{uid}") == [] and pk.versions(ctx, f"gone.App{uid}") == []
    with pytest.raises(Exception):
        ctx.client("greengrassv2").get_deployment(deploymentId=dep)
    jobs = ctx.client("sagemaker").list_compilation_jobs(NameContains=f"gone-{uid}")["CompilationJobSummaries"]
    assert jobs == []
    assert pk.versions(other_ctx, pk.APP_COMPONENT)  # another stack's components are untouched


def test_an_explicit_version_that_exists_is_refused_before_any_upload(stack, published, model_dir, sample_images,
                                                                      calls):
    from actions.errors import NameConflict

    ctx, cfg = stack
    images = next(iter(sample_images.values())).parent
    calls.attach(ctx)
    with pytest.raises(NameConflict, match="already published"):
        list(pk.package(ctx, pk.PackageSpec(model_dir, bucket=cfg.bucket, images_dir=images, version="1.0.0")))
    assert calls.mutating() == []


def test_the_recipe_can_start_an_installed_edge_client():
    recipe = pk.app_recipe("a.App", "1.0.0", "s3://b/k.zip", model_component="a.Model", model_version="1.0.0",
                           settings=dict(pk.DEFAULT_SETTINGS), python="python3", command="edge-client")
    run = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    assert 'exec edge-client run --config "{artifacts:decompressedPath}/edge-client/edge-client.json"' in run
    assert recipe["Manifests"][0]["Lifecycle"]["Setenv"]["EDGE_CLIENT_TOP_K"] == "{configuration:/top_k}"


def test_a_deployment_running_the_edge_manager_agent_is_revised_without_it(stack, published):
    ctx, cfg = stack
    group = f"agent-{UID}"
    ctx.client("iot").create_thing_group(thingGroupName=group)
    # The sandbox serves the public aws.greengrass.SageMakerEdgeManager component: a NotFound is a failure.
    dep = deploy.create(ctx, group, {leftovers.AGENT_COMPONENT: "1.1.1", pk.MODEL_COMPONENT: "1.0.0"})
    (item,) = [f for f in leftovers.find(ctx, buckets=[]) if f.kind == "deployment" and group in f.name]
    list(leftovers.remove(ctx, [item]))
    latest = deploy.history(ctx, group)[0]
    assert latest["deploymentId"] != dep
    components = deploy.get(ctx, latest["deploymentId"])["components"]
    assert list(components) == [pk.MODEL_COMPONENT]


def test_a_device_that_never_answers_ends_timed_out(sandbox, stack, published, add_device):
    ctx, _ = stack
    group, device = f"quiet-grp-{UID}", f"quiet-{UID}"
    add_device(device, group)
    sandbox.remove_device(device)  # it stays a core device of the group, but nobody is home
    dep = deploy.create(ctx, group, {pk.MODEL_COMPONENT: "1.0.0"})
    events = list(deploy.follow(ctx, dep, timeout=2, poll=0.2))
    assert events[-1].state == FAILED and events[-1].data["devices"] == {device: "TIMED_OUT"}
    assert "no result within 2 s" in [e.message for e in events if e.step == device][-1]
