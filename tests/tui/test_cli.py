"""`edge-console` on the command line: an operator's mistake is one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "edge-console"


def _run(*args: str, **env) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(env)
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60, env=environ)


def test_unknown_profile_is_one_line():
    out = _run("--profile", "no-such-profile-here", "--region", "us-east-1",
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-profile-here" in lines[0] and "Traceback" not in out.stderr


def test_missing_region_is_one_line():
    out = _run(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    assert out.returncode == 1
    assert out.stderr.strip() == "edge-console: No AWS region is set; pass --region or set AWS_REGION (or AWS_DEFAULT_REGION)."


def test_bad_mqtt_options_are_one_line():
    out = _run("--region", "us-east-1", "--mqtt", "localhost", AWS_CONFIG_FILE="/nonexistent")
    assert out.returncode == 1 and "is not HOST:PORT" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _run("--region", "us-east-1", "--iot-endpoint", "x-ats.iot.us-east-1.amazonaws.com", "--cert", "/nope.pem",
               "--key", "/nope.key", AWS_CONFIG_FILE="/nonexistent")
    assert out.returncode == 1 and "--cert /nope.pem does not exist" in out.stderr


def test_help_lists_every_headless_subcommand_and_each_answers_help():
    from tui.main import HEADLESS

    out = _run("--help")
    assert out.returncode == 0
    listed = out.stdout.split("headless subcommands", 1)[1]
    for name in HEADLESS:
        assert f"\n  {name} " in listed, name
        sub = _run(name, "--help")
        assert sub.returncode == 0 and "usage: edge-console" in sub.stdout, (name, sub.stderr[-300:])


def test_mqtt_with_ca_and_client_certificate_uses_mutual_tls(mqtt_broker):
    """`--mqtt HOST:PORT --ca --cert --key` reaches a broker that demands a client certificate."""
    import argparse
    import threading

    import paho.mqtt.publish as publish

    from tui.launch import mqtt_from_args

    cert, key = mqtt_broker.client_cert("console-cli")
    args = argparse.Namespace(mqtt=f"{mqtt_broker.host}:{mqtt_broker.tls_port}", iot_endpoint=None,
                              ca=str(mqtt_broker.ca_path), cert=str(cert), key=str(key))
    got = threading.Event()
    subscription = mqtt_from_args(args)("cli/tls/test", lambda topic, payload: payload == b"hello" and got.set())
    try:
        for _ in range(50):  # publish until the subscription is in place and the message comes back
            publish.single("cli/tls/test", b"hello", hostname=mqtt_broker.host, port=mqtt_broker.port)
            if got.wait(0.2):
                break
        assert got.is_set(), subscription.status()
    finally:
        subscription.close()


def test_mqtt_cert_without_key_is_one_line(tmp_path):
    pem = tmp_path / "c.pem"
    pem.write_text("x")
    out = _run("--mqtt", "127.0.0.1:8883", "--cert", str(pem), AWS_REGION="us-east-1")
    assert out.returncode != 0 and "--cert and --key go together" in out.stderr and "Traceback" not in out.stderr
