"""A secret setting's value never appears in an error, a log line or `--check`, however it is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from actions.errors import ConfigError
from edge_client.config import is_secret, load_settings

BASE = {"model_dir": "/m", "source": "/images"}


@pytest.mark.parametrize("value", [["hunter2"], {"pw": "hunter2"}, True])
def test_a_wrongly_typed_password_is_not_repeated_in_the_error(tmp_path, value):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**BASE, "mqtt_password": value}))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert "mqtt_password" in message and "not text" in message and "secret" in message
    assert "hunter2" not in message and "True" not in message


def test_a_password_in_the_environment_json_is_not_repeated_either():
    environ = {"EDGE_CLIENT_CONFIG_JSON": json.dumps({**BASE, "mqttPassword": ["hunter2"]})}
    with pytest.raises(ConfigError, match="mqttPassword|mqtt_password") as info:
        load_settings(None, environ=environ)
    assert "hunter2" not in str(info.value)


def test_other_settings_still_show_the_wrong_value(tmp_path):
    # Only secrets are hidden: a wrong threshold or key path is shown, so the operator can find it.
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**BASE, "key_path": ["/certs/device.key"]}))
    with pytest.raises(ConfigError, match=r"key_path .* is \['/certs/device.key'\]"):
        load_settings(path, environ={})


@pytest.mark.parametrize("name, secret", [
    ("mqtt_password", True), ("mqttPassword", True), ("api_token", True), ("client_secret", True),
    ("private_key", True), ("access_key", True), ("key_path", False), ("cert_path", False),
    ("ca_path", False), ("keepalive", False), ("threshold", False),
])
def test_which_settings_are_secrets(name, secret):
    assert is_secret(name) is secret


def test_the_agent_logs_the_error_without_the_password(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**BASE, "mqtt_password": ["hunter2"]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_CLIENT_")}
    proc = subprocess.run([sys.executable, "-m", "edge_client.cli", "run", "--config", str(path), "--check"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert "mqtt_password" in output and "hunter2" not in output and "Traceback" not in output
