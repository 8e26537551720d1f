"""The headless CLI: real subcommands against a real server, JSON output, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from actions.cli import main

from .conftest import reset


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_setup_plan_apply_destroy_json(moto_url, tmp_path, capsys):
    reset(moto_url)
    common = ["--sandbox", moto_url, "--state-dir", str(tmp_path), "--stack", "cli", "--json"]
    assert main(["setup", "plan", *common]) == 0
    (plan,) = _json_lines(capsys.readouterr().out)
    assert [c["action"] for c in plan["result"]] == ["create"] * 9 + ["none"]
    assert main(["setup", "apply", *common]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert lines[-2]["event"]["percent"] == 100.0 and not [x for x in lines[:-1] if x["event"]["state"] == "failed"]
    result = lines[-1]["result"]
    assert result["instances"][0]["state"] == "running" and result["hourly_price_usd"] == 0.085
    assert result["compile_role_arn"].endswith(":role/SageMakerGreenGrassV2MinimalResourceRole-NeoCompilation")
    assert main(["setup", "destroy", *common]) == 0  # without --yes: shows, removes nothing
    (shown,) = _json_lines(capsys.readouterr().out)
    assert {c["step"] for c in shown["result"] if c["action"] == "delete"} >= {"instance", "bucket", "iam-role"}
    assert main(["setup", "destroy", "--yes", *common]) == 0
    capsys.readouterr()
    assert main(["setup", "plan", *common]) == 0
    assert all(c["action"] == "create" for c in _json_lines(capsys.readouterr().out)[0]["result"][:9])


def test_setup_plan_text_shows_documents_and_price(moto_url, tmp_path, capsys):
    reset(moto_url)
    assert main(["setup", "plan", "--sandbox", moto_url, "--state-dir", str(tmp_path), "--preset", "runbook"]) == 0
    out = capsys.readouterr().out
    assert "AmazonS3FullAccess" in out and "sts:AssumeRole" in out and "USD 0.085/hour" in out
    assert "plan: 8 to create, 0 to change, 0 to delete, 2 left alone" in out
    # The runbook keeps one role for the edge server and Neo: the plan says why and what it risks.
    assert "= compile-role     no separate compilation role under the runbook preset" in out
    assert "Risk: anything on the edge server" in out


@pytest.mark.parametrize("argv, code, words", [
    (["setup", "plan", "--thing-name", "MyThing"], 2, "thing_name"),
    (["setup", "launch"], 2, "invalid choice"),
    (["deploy", "--component", "nameonly"], 2, "NAME=VERSION"),
    (["compile", "--model", "/no/such/model.tar.gz", "--input", '{"input0": [1, 3, 224, 224]}'], 2, "does not exist"),
    (["compile", "--model", "x.tar.gz", "--input", "{oops"], 2, "not valid JSON"),
    (["package", "--artifact", "/no/such/dir"], 2, "compile first"),
    (["package", "--artifact", "."], 2, "--images"),
])
def test_mistakes_are_one_line_without_traceback(moto_url, tmp_path, capsys, argv, code, words):
    reset(moto_url)
    assert main([*argv, "--sandbox", moto_url, "--state-dir", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_resources_are_typed_errors_with_a_hint(moto_url, tmp_path, capsys):
    reset(moto_url)
    assert main(["fleet", "--group", "nogroup", "--sandbox", moto_url, "--state-dir", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "NotFound"
    assert "setup apply" in captured.err


def test_compile_without_a_compilation_role_is_one_line_before_any_upload(moto_url, tmp_path, capsys):
    reset(moto_url)
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"not read: the role is looked up first")
    argv = ["compile", "--model", str(model), "--input", '{"input0": [1, 3, 224, 224]}', "--sandbox", moto_url,
            "--state-dir", str(tmp_path / "state"), "--stack", "nothing-here"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Stack nothing-here has no compilation role" in err
    assert "edge-console setup apply --stack nothing-here" in err and "--role-name" in err
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    assert s3.list_buckets()["Buckets"] == []  # no bucket, so nothing was uploaded anywhere


def test_unreachable_endpoint_says_so(tmp_path, capsys):
    assert main(["fleet", "--sandbox", "http://127.0.0.1:9", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot be reached" in err and len(err.strip().splitlines()) == 1


def test_the_edge_console_dispatcher_routes_here(moto_url, tmp_path):
    reset(moto_url)
    proc = subprocess.run([sys.executable, "-m", "tui.main", "setup", "plan", "--sandbox", moto_url,
                           "--state-dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["result"]) == 10


def test_package_deploy_fleet_logs_through_the_cli(sandbox, model_dir, sample_images, tmp_path, capsys):
    uid = uuid.uuid4().hex[:6]
    group, device = f"cli-{uid}", f"cli-dev-{uid}"
    common = ["--sandbox", str(sandbox.state_dir), "--state-dir", str(tmp_path), "--stack", f"cli{uid}", "--json"]
    bucket = f"edge-console-cli-{uid}"
    sandbox.client("s3").create_bucket(Bucket=bucket)
    sandbox.add_device(device, group)
    try:
        images = str(next(iter(sample_images.values())).parent)
        assert main(["package", "--artifact", str(model_dir), "--bucket", bucket, "--python", sys.executable, "--images", images,
                     "--model-component", f"cli.Model{uid}", "--app-component", f"cli.App{uid}", *common]) == 0
        result = _json_lines(capsys.readouterr().out)[-1]["result"]
        assert result["model"]["version"] == "1.0.0" and result["app"]["state"] == "DEPLOYABLE"
        assert main(["deploy", "--group", group, "--model-component", f"cli.Model{uid}",
                     "--app-component", f"cli.App{uid}", "--set", "threshold=0.25", "--timeout", "120", *common]) == 0
        lines = _json_lines(capsys.readouterr().out)
        assert lines[-1]["result"]["devices"] == {device: "SUCCEEDED"}
        assert main(["fleet", "--group", group, "--details", *common]) == 0
        (fleet,) = _json_lines(capsys.readouterr().out)
        (row,) = fleet["result"]
        assert row["name"] == device and {c["name"] for c in row["components"]} >= {f"cli.Model{uid}", f"cli.App{uid}"}
        assert main(["logs", device, "greengrass", "--lines", "5", *common]) == 0
        (logs,) = _json_lines(capsys.readouterr().out)
        assert 0 < len(logs["result"]) <= 5

        # The client's retained status message, read from the broker, beside the Greengrass status.
        from actions.messages.status import build_status, encode
        from actions.mqtt import open_transport
        from actions.mqtt.base import MqttSettings

        host, port = sandbox.broker.host, sandbox.broker.port
        with open_transport(MqttSettings(host=host, port=port, client_id=f"cli-pub-{uid}"), kind="mqtt") as pub:
            pub.connect()
            pub.publish(f"edge-console/{device}/status", encode(build_status(device=device, state="degraded",
                                                                             last_error="camera lost")),
                        qos=1, retain=True).result(10)
        assert main(["fleet", "--group", group, "--mqtt-host", host, "--mqtt-port", str(port), *common]) == 0
        (fleet,) = _json_lines(capsys.readouterr().out)
        row = [r for r in fleet["result"] if r["name"] == device][0]
        assert row["client"]["state"] == "degraded" and row["client"]["last_error"] == "camera lost"
        assert row["core_status"] in ("HEALTHY", "UNHEALTHY") and row["client_last_seen"]

        # History, then a rollback with nothing before: a typed error with a hint, exit 1.
        assert main(["deploy", "--group", group, "--history", *common]) == 0
        (history,) = _json_lines(capsys.readouterr().out)
        assert len(history["result"]) == 1
        assert main(["deploy", "--group", group, "--rollback", *common]) == 1
        assert "no earlier deployment" in capsys.readouterr().err
    finally:  # its core device and edge client must not outlive a failed test
        if device in sandbox.devices:
            sandbox.remove_device(device)


def test_compile_local_writes_an_artifact(model_tar, tmp_path, capsys):
    out = tmp_path / "compiled"
    assert main(["compile", "--local", str(out), "--model", str(model_tar), "--input",
                 '{"input0": [1, 3, 224, 224]}', "--json"]) == 0
    result = _json_lines(capsys.readouterr().out)[-1]["result"]
    assert Path(result["artifact_dir"]) == out
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "model.onnx").is_file() and manifest


def test_compile_local_refuses_a_wrong_shape(model_tar, tmp_path, capsys):
    assert main(["compile", "--local", str(tmp_path / "o"), "--model", str(model_tar), "--input",
                 '{"input0": [1, 3, 224]}']) == 1
    err = capsys.readouterr().err
    assert "DataInputConfig" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written
