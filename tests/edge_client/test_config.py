"""Agent settings: file, Greengrass configuration and environment, with errors that name the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from actions.errors import ConfigError
from edge_client.config import load_settings, normalize_key

BASE = {"model_dir": "/m", "source": "/images"}


def _file(tmp_path, data, name="c.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_defaults_and_file(tmp_path):
    s = load_settings(_file(tmp_path, {**BASE, "device": "edge-1", "topK": 3}), environ={})
    assert s.top_k == 3 and s.threshold == 0.3 and s.device == "edge-1"
    assert s.topic == "gg/sageMakerEdgeManager/image-classification"
    assert s.resolved_status_topic == "edge-console/edge-1/status"
    assert s.origins["top_k"] == "file" and s.origins["threshold"] == "default"


def test_environment_beats_greengrass_beats_file(tmp_path):
    path = _file(tmp_path, {**BASE, "device": "a", "threshold": 0.1, "top_k": 2, "interval": 5})
    env = {"EDGE_CLIENT_THRESHOLD": "0.5", "EDGE_CLIENT_MQTT_HOST": "127.0.0.2", "EDGE_CLIENT_MQTT_PORT": "1884"}
    gg = {"TopK": 4, "accessControl": {"aws.greengrass.ipc.mqttproxy": {}}, "Interval": 2}
    s = load_settings(path, environ=env, greengrass=gg)
    assert (s.threshold, s.top_k, s.interval) == (0.5, 4, 2.0)
    assert s.mqtt_host == "127.0.0.2" and s.mqtt_port == 1884 and s.host_given
    assert s.origins["threshold"] == "env" and s.origins["top_k"] == "greengrass"


def test_everything_from_the_environment_alone():
    env = {"EDGE_CLIENT_MODEL_DIR": "/m", "EDGE_CLIENT_SOURCE": "/i", "EDGE_CLIENT_LOOP": "yes",
           "EDGE_CLIENT_CONFIG_JSON": '{"max-rate": 4, "loop": false}'}
    s = load_settings(None, environ=env)
    assert s.loop is True  # the single variable beats the JSON blob
    assert s.max_rate == 4.0 and s.period == 1.0  # the default interval (1 s) is the longer wait


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _file(tmp_path / "sub", {"model_dir": "model", "source": "imgs/*.jpg", "outbox_path": "o.sqlite"})
    s = load_settings(path, environ={})
    assert s.model_dir == str(tmp_path / "sub" / "model")
    assert s.source == str(tmp_path / "sub" / "imgs" / "*.jpg")
    assert s.outbox_path == str(tmp_path / "sub" / "o.sqlite")


def test_yaml_file(tmp_path):
    s = load_settings(_file(tmp_path, "model_dir: /m\nsource: /i\ntop_k: 2\n", "c.yaml"), environ={})
    assert s.top_k == 2


@pytest.mark.parametrize("data, env, words", [
    ({**BASE, "treshold": 0.2}, {}, "did you mean threshold"),
    ({**BASE, "top_k": "many"}, {}, "top_k"),
    ({**BASE, "threshold": 3}, {}, "between 0 and 1"),
    ({"source": "/i"}, {}, "model_dir is not set"),
    ({"model_dir": "/m"}, {}, "source is not set"),
    (BASE, {"EDGE_CLIENT_LOOP": "perhaps"}, "EDGE_CLIENT_LOOP"),
    ({**BASE, "greengrass_thing": 1}, {}, "unknown setting"),
    (BASE, {"EDGE_CLIENT_MQTT_PORT": "70000"}, "mqtt_port"),
    (BASE, {"EDGE_CLIENT_TOPIC": "a/+/b"}, "wildcards"),
    ({**BASE, "max_publish_rate": -1}, {}, "max_publish_rate must not be negative"),
    (BASE, {"EDGE_CLIENT_CONFIG_JSON": "{oops"}, "EDGE_CLIENT_CONFIG_JSON"),
    ("{not json", {}, "not valid JSON"),
    ("[1, 2]", {}, "one object"),
])
def test_bad_settings_say_what_to_fix(tmp_path, data, env, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(_file(tmp_path, data), environ=env)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.json", environ={})


@pytest.mark.parametrize("raw, key", [("modelDir", "model_dir"), ("ModelDir", "model_dir"),
                                      ("model-dir", "model_dir"), ("MODEL_DIR", "model_dir"),
                                      ("topK", "top_k"), ("mqttTLS", "mqtt_tls")])
def test_key_spellings(raw, key):
    assert normalize_key(raw) == key


def test_password_is_masked(tmp_path):
    s = load_settings(_file(tmp_path, {**BASE, "mqtt_password": "hunter2"}), environ={})
    assert "hunter2" not in repr(s) and s.public()["mqtt_password"] == "***"
    assert s.mqtt().password == "hunter2"


def _cli(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_CLIENT_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "edge_client.cli", "run", *args], capture_output=True,
                          text=True, env=full_env, timeout=60)


def test_cli_check_prints_settings_without_secrets(tmp_path):
    path = _file(tmp_path, {**BASE, "mqtt_password": "hunter2"})
    proc = _cli("--config", str(path), "--check", "--set", "top_k=2", env={"EDGE_CLIENT_DEVICE": "dev-x"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert shown["top_k"] == 2 and shown["device"] == "dev-x" and "hunter2" not in proc.stdout


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path):
    proc = _cli("--config", str(_file(tmp_path, {**BASE, "thresold": 1})))
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "thresold" in lines[0] and "Traceback" not in proc.stderr


def test_sandbox_environment_names_the_device():
    """The sandbox's core device sets EDGE_CLIENT_DEVICE_NAME; Greengrass sets AWS_IOT_THING_NAME."""
    env = {"EDGE_CLIENT_MODEL_DIR": "/m", "EDGE_CLIENT_SOURCE": "/i", "EDGE_CLIENT_DEVICE_NAME": "thing-7"}
    assert load_settings(None, environ=env).device == "thing-7"


def test_unknown_environment_variable_is_a_warning_not_fatal():
    env = {"EDGE_CLIENT_MODEL_DIR": "/m", "EDGE_CLIENT_SOURCE": "/i", "EDGE_CLIENT_TRESHOLD": "0.9"}
    s = load_settings(None, environ=env)
    assert s.threshold == 0.3
    assert len(s.warnings) == 1 and "did you mean threshold" in s.warnings[0]


@pytest.mark.parametrize("kind, configured, interval, rate, says", [
    ("mqtt", None, 0, 0.0, None),  # a local broker: no limit
    ("iot-core", None, 1.0, 90.0, None),  # AWS IoT Core's 100/s per connection, with room for status
    ("greengrass-ipc", None, 0, 90.0, "may classify without a limit but publishes at most 90 per second"),
    ("greengrass-ipc", 0, 1.0, 0.0, "set max_publish_rate to 90 or less"),
    ("iot-core", 500, 1.0, 500.0, "the broker will throttle this agent"),
    ("mqtt", 20, 0.01, 20.0, "may classify 100 images per second but publishes at most 20 per second"),
])
def test_publish_rate_follows_the_transport(tmp_path, kind, configured, interval, rate, says):
    import logging

    from edge_client.agent import Agent

    data = {**BASE, "interval": interval, **({} if configured is None else {"max_publish_rate": configured})}
    agent = Agent(load_settings(_file(tmp_path, data), environ={}))
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("edge-client")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        assert agent._publish_rate(kind) == rate
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and says in lines[0], lines
