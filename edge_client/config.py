"""Agent settings: one flat set of keys, from a file, the Greengrass component configuration and
the environment.

Where a value comes from, weakest first:

1. the defaults below;
2. the config file given with `edge-client run --config FILE` (JSON, or YAML when the name ends
   in .yaml/.yml and PyYAML is installed): one flat object of the keys below;
3. the Greengrass component configuration, when running as a component (read over IPC with
   GetConfiguration; same keys, at the top level of the component's configuration);
4. `EDGE_CLIENT_CONFIG_JSON`: a JSON object of the keys below (handy for a recipe's Setenv);
5. one environment variable per key: `EDGE_CLIENT_<KEY>` in upper case, e.g.
   `EDGE_CLIENT_MODEL_DIR`, `EDGE_CLIENT_MQTT_HOST`, `EDGE_CLIENT_MQTT_PORT`.

Keys may be written `model_dir`, `model-dir`, `modelDir` or `ModelDir` (Greengrass recipes tend to
use camelCase): they mean the same. An unknown key is an error, so a typo never goes unnoticed.
Booleans accept true/false, yes/no, on/off, 1/0.

Example (JSON):

    {"device": "edge-1", "model_dir": "/greengrass/v2/work/model/onnx",
     "source": "/data/images", "interval": 1.0, "top_k": 5, "threshold": 0.3,
     "mqtt_host": "127.0.0.1", "mqtt_port": 1883,
     "outbox_path": "outbox.sqlite", "outbox_max_messages": 100000}
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from actions.errors import ConfigError
from actions.messages.prediction import PREDICTION_TOPIC
from actions.messages.status import STATUS_TOPIC_TEMPLATE
from actions.mqtt.base import MqttSettings

ENV_PREFIX = "EDGE_CLIENT_"
CONFIG_JSON_ENV = "EDGE_CLIENT_CONFIG_JSON"
# EDGE_CLIENT_ variables that are not settings (read elsewhere) and must not be flagged as unknown.
NOT_SETTINGS = {"CONFIG_JSON"}
# Keys a component configuration holds for the nucleus, not for us.
GREENGRASS_ONLY = {"access_control"}
# Other names people (and the sandbox's core device) use for a setting.
ALIASES = {"device_name": "device", "thing_name": "device", "model_path": "model_dir"}


def _default_device() -> str:
    # Greengrass sets AWS_IOT_THING_NAME for every component it runs.
    return os.environ.get("AWS_IOT_THING_NAME") or socket.gethostname() or "edge-device"


@dataclass
class Settings:
    """Every setting of the agent. See the module docstring for where values come from.

    Attributes:
        device: the device (thing) name in every message.
        model_dir: the compiled model artifact directory (required).
        model_variant: "fp32" or "int8" for an ONNX Runtime artifact; None takes the manifest's default.
        source: images to classify: a file, a directory (watched for new images), a glob
            ("/data/*.jpg") or a camera ("camera:0", "camera:/dev/video0" or a stream URL; needs
            OpenCV). A camera that gives no frame for 1 s is reported and reopened, every 5 s at most.
        loop: go over the images again and again (a file, a glob, or a directory's images).
        interval: at least this many seconds between two images (0: as fast as possible).
        max_rate: at most this many images per second (0: no limit).
        top_k: how many classes each prediction carries.
        threshold: only classes with at least this probability (0..1).
        topic: where predictions go.
        status_topic: where status goes; `{device}` is replaced by the device name.
        status_interval: seconds between two status messages (also sent on every change).
        outbox_path: the SQLite outbox file (relative paths are under the working directory).
        outbox_max_messages: the outbox's limit; beyond it the oldest are dropped and counted.
        outbox_sync: "normal" (survives a crash of the process) or "full" (also a power cut; slower).
        transport: "auto", "mqtt", "iot-core" or "greengrass-ipc".
        mqtt_host, mqtt_port, mqtt_tls, ca_path, cert_path, key_path, client_id, mqtt_username,
        mqtt_password, mqtt_protocol, keepalive, iot_endpoint, max_inflight, allow_plaintext:
            see `actions.mqtt.MqttSettings` (client_id defaults to the device name).
        max_publish_rate: at most this many predictions published per second; the rest wait in the
            outbox. None (the default): 90 with AWS IoT Core or Greengrass IPC, whose broker takes at
            most 100 publishes per second on a connection, and no limit with plain MQTT; 0: no limit.
        max_images: stop classifying after this many images (0: never).
        exit_when_done: when the source has no more images (or max_images is reached), send
            everything, publish a final status and exit 0 instead of idling.
        drain_timeout: on SIGTERM, seconds to keep sending what is in the outbox before exiting.
        watch_interval: seconds between checks of the model directory and config file for changes.
        log_level: debug, info, warning or error.
        log_predictions: print each prediction's JSON on stdout (as the runbook's component did).
        threads: ONNX Runtime threads per image. 1 (the default): each image runs on one core,
            and without an interval as many images as cores are classified at once, the most
            images/s on a small CPU (about 1.5x of 0 on the 2-core bench machine); 0: ONNX
            Runtime's own choice, every core on one image, the lowest latency for a single image.
    """

    device: str = field(default_factory=_default_device)
    model_dir: str | None = None
    model_variant: str | None = None
    source: str | None = None
    loop: bool = False
    interval: float = 1.0
    max_rate: float = 0.0
    top_k: int = 5
    threshold: float = 0.3
    topic: str = PREDICTION_TOPIC
    status_topic: str = STATUS_TOPIC_TEMPLATE
    status_interval: float = 30.0
    outbox_path: str = "edge-client-outbox.sqlite"
    outbox_max_messages: int = 100_000
    outbox_sync: str = "normal"
    transport: str = "auto"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int | None = None
    mqtt_tls: bool | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    client_id: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_protocol: int = 3
    keepalive: int = 30
    iot_endpoint: str | None = None
    max_inflight: int = 100
    max_publish_rate: float | None = None
    allow_plaintext: bool = False
    max_images: int = 0
    exit_when_done: bool = False
    drain_timeout: float = 10.0
    watch_interval: float = 2.0
    log_level: str = "info"
    log_predictions: bool = True
    threads: int = 1
    # Where each value came from ("default", "file", "greengrass", "env"): for `--check` and logs.
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Unknown EDGE_CLIENT_ environment variables: logged at start, not fatal.
    warnings: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def resolved_status_topic(self) -> str:
        """The status topic with the device name filled in."""
        return self.status_topic.replace("{device}", self.device)

    @property
    def period(self) -> float:
        """Minimum seconds between two images, from interval and max_rate."""
        return max(self.interval, 1.0 / self.max_rate if self.max_rate > 0 else 0.0)

    @property
    def host_given(self) -> bool:
        """The broker host was set explicitly (selects plain MQTT over Greengrass IPC)."""
        return self.origins.get("mqtt_host", "default") != "default"

    def mqtt(self) -> MqttSettings:
        """The transport settings."""
        return MqttSettings(
            transport=self.transport, host=self.mqtt_host, port=self.mqtt_port, tls=self.mqtt_tls,
            ca_path=self.ca_path, cert_path=self.cert_path, key_path=self.key_path,
            client_id=self.client_id or self.device, username=self.mqtt_username,
            password=self.mqtt_password, keepalive=self.keepalive, protocol=self.mqtt_protocol,
            iot_endpoint=self.iot_endpoint, max_inflight=self.max_inflight,
            allow_plaintext=self.allow_plaintext)

    def public(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for logs and `--check`."""
        out = {name: getattr(self, name) for name in FIELDS}
        for name in out:
            if out[name] and is_secret(name):
                out[name] = "***"
        return out


FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in ("origins", "warnings")}


def normalize_key(key: str) -> str:
    """`modelDir`, `ModelDir`, `model-dir`, `MODEL_DIR` -> `model_dir`."""
    key = key.strip()
    if not key.isupper():
        key = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key)
    return key.replace("-", "_").lower()


# Words that make a setting's value a secret: it is never shown in an error or a log. Key and
# certificate *paths* (key_path, ca_path, ...) are not secrets and are shown.
SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "private_key", "api_key", "access_key")


def is_secret(name: str) -> bool:
    """True when setting `name` (any spelling) holds a secret: mqtt_password, *token*, *secret*, *_key, ..."""
    key = normalize_key(str(name))
    if key.endswith(("_path", "_file", "_dir")):
        return False
    return any(word in key for word in SECRET_WORDS) or key == "key" or key.endswith("_key")


def _type_of(name: str) -> str:
    return str(FIELDS[name].type)


def coerce(name: str, value: Any, where: str) -> Any:
    """Convert a value (from JSON or an environment string) to the setting's type."""
    kind = _type_of(name)
    optional = "None" in kind
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")
                         and optional):
        if optional:
            return None
        raise ConfigError(f"{name} ({where}) must have a value")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return str(value)
    except ValueError:
        want = kind.split(" ")[0].replace("bool", "true or false").replace("int", "a whole number") \
            .replace("float", "a number").replace("str", "text")
        if is_secret(name):  # the value may be the secret itself, or part of it: never repeat it
            raise ConfigError(f"{name} ({where}) is not {want} (its value is not shown: it is a secret)") from None
        raise ConfigError(f"{name} ({where}) is {value!r:.60}, which is not {want}") from None


def _apply(values: dict[str, Any], source: Mapping[str, Any], where: str, origin: str,
           origins: dict[str, str], unknown: list[str] | None = None) -> None:
    for raw_key, value in source.items():
        key = normalize_key(str(raw_key))
        key = ALIASES.get(key, key)
        if origin == "greengrass" and key in GREENGRASS_ONLY:
            continue
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            message = f"unknown setting {raw_key!r} in {where}{hint}: remove it or fix its name"
            if unknown is not None:
                unknown.append(message)  # the environment holds other programs' variables too
                continue
            raise ConfigError(message)
        values[key] = coerce(key, value, where)
        origins[key] = origin


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a flat JSON (or YAML) config file into a dict. Raises ConfigError saying what is wrong."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the path given to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path} is YAML but PyYAML is not installed: use JSON or pip install pyyaml") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold one object of settings, not a {type(data).__name__}")
    return data


def load_settings(config_path: str | os.PathLike | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  greengrass: Mapping[str, Any] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Merge defaults, the config file, the Greengrass configuration and the environment.

    Args:
        config_path: the config file, or None.
        environ: the environment (default os.environ).
        greengrass: the component configuration read over IPC, or None.
        overrides: values given on the command line (`--set key=value`), strongest of all.

    Returns:
        Validated Settings.

    Raises:
        ConfigError: a file cannot be read, a key is unknown, or a value is invalid.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if config_path is not None:
        _apply(values, read_config_file(config_path), f"config file {config_path}", "file", origins)
    if greengrass:
        _apply(values, dict(greengrass), "the Greengrass component configuration", "greengrass", origins)
    blob = environ.get(CONFIG_JSON_ENV)
    if blob:
        try:
            data = json.loads(blob)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{CONFIG_JSON_ENV} is not valid JSON ({exc.msg}): fix or unset it") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{CONFIG_JSON_ENV} must be a JSON object of settings")
        _apply(values, data, CONFIG_JSON_ENV, "env", origins)
    env_values = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX):]
            if key in NOT_SETTINGS:
                continue
            env_values[key] = value
    warnings: list[str] = []
    for key, value in env_values.items():
        _apply(values, {key: value}, f"environment variable {ENV_PREFIX}{key}", "env", origins, warnings)
    if overrides:
        _apply(values, dict(overrides), "the command line", "cli", origins)
    settings = Settings(**values)
    settings.origins = {name: origins.get(name, "default") for name in FIELDS}
    settings.warnings = warnings
    if config_path is not None:
        # Relative paths in a config file are relative to the file, not to wherever the agent started.
        base = Path(config_path).expanduser().resolve().parent
        for key in ("model_dir", "outbox_path", "ca_path", "cert_path", "key_path"):
            value = getattr(settings, key)
            if value and origins.get(key) == "file" and not os.path.isabs(os.path.expanduser(value)):
                setattr(settings, key, str(base / value))
        if settings.source and origins.get("source") == "file" and not settings.source.startswith("camera:") \
                and not os.path.isabs(os.path.expanduser(settings.source)):
            settings.source = str(base / settings.source)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Check ranges and required values. Raises ConfigError naming the setting and the fix."""
    if not settings.model_dir:
        raise ConfigError("model_dir is not set: set it in the config file or EDGE_CLIENT_MODEL_DIR "
                          "to the compiled model's directory")
    if not settings.source:
        raise ConfigError("source is not set: set it (EDGE_CLIENT_SOURCE) to an image file, a directory, "
                          "a glob like /data/*.jpg, or camera:0")
    if not settings.device or "/" in settings.device or "+" in settings.device or "#" in settings.device:
        raise ConfigError(f"device {settings.device!r} is not a valid name: use letters, digits, - and _")
    if settings.top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {settings.top_k}")
    if not 0.0 <= settings.threshold <= 1.0:
        raise ConfigError(f"threshold is a probability between 0 and 1, got {settings.threshold:g}")
    if settings.max_publish_rate is not None and settings.max_publish_rate < 0:
        raise ConfigError(f"max_publish_rate must not be negative, got {settings.max_publish_rate:g}")
    for name in ("interval", "max_rate", "drain_timeout"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(settings, name):g}")
    for name in ("status_interval", "watch_interval"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be more than 0 seconds, got {getattr(settings, name):g}")
    if settings.outbox_max_messages < 1:
        raise ConfigError(f"outbox_max_messages must be at least 1, got {settings.outbox_max_messages}")
    if settings.outbox_sync not in ("normal", "full"):
        raise ConfigError(f"outbox_sync must be normal or full, got {settings.outbox_sync!r}")
    if settings.mqtt_protocol not in (3, 5):
        raise ConfigError(f"mqtt_protocol must be 3 or 5, got {settings.mqtt_protocol}")
    if settings.mqtt_port is not None and not 0 < settings.mqtt_port < 65536:
        raise ConfigError(f"mqtt_port must be 1..65535, got {settings.mqtt_port}")
    if settings.threads < 0:
        raise ConfigError(f"threads must be 0 (ONNX Runtime's choice) or more, got {settings.threads}")
    if settings.max_inflight < 1:
        raise ConfigError(f"max_inflight must be at least 1, got {settings.max_inflight}")
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level must be debug, info, warning or error, got {settings.log_level!r}")
    if not settings.topic or any(c in settings.topic for c in "+#"):
        raise ConfigError(f"topic {settings.topic!r} must be a topic name without wildcards")
    if any(c in settings.resolved_status_topic for c in "+#"):
        raise ConfigError(f"status_topic {settings.status_topic!r} must not contain wildcards")


def greengrass_configuration(timeout: float = 10.0) -> dict[str, Any] | None:
    """The component's own configuration over Greengrass IPC, or None when not under a nucleus.

    Untested here (no nucleus on the build machines). A failure to read it is reported, not fatal:
    the file and environment still configure the agent.
    """
    from actions.mqtt import GG_SOCKET_ENV

    if not os.environ.get(GG_SOCKET_ENV):
        return None
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    client = GreengrassCoreIPCClientV2()
    try:
        response = client.get_configuration(key_path=[])
        value = response.value or {}
        return dict(value) if isinstance(value, dict) else None
    finally:
        client.close()
