"""Package a compiled model as the runbook's two Greengrass components and publish them.

What Edge Manager's packaging job and the chapter's hand-edited recipes did, done for you:

- `<model component>` (default `com.greengrass.SageMakerEdgeManager.ImageClassification.Model`): the
  compiled artifact directory, zipped, uploaded to `s3://<bucket>/artifacts/<name>/<version>/model.zip`;
- `<app component>` (default `com.greengrass.SageMakerEdgeManager.ImageClassification`): the edge
  client (our `edge_client` and the parts of `actions` it imports, zipped, plus optional sample
  images), whose recipe runs `edge-client run --config ...` with its settings (topic, threshold,
  top-k, model path, ...) as the recipe's DefaultConfiguration, and depends on the exact model version.

Recipes are generated with the real S3 URIs, saved under `<stack dir>/recipes/`, versions are bumped
(patch by default) and published with CreateComponentVersion.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from actions.aws import aws_call, pages
from actions.context import Context
from actions.errors import AwsError, ConfigError, NameConflict, NotFound
from actions.files import write_json
from actions.progress import DONE, RUNNING, Progress

MODEL_COMPONENT = "com.greengrass.SageMakerEdgeManager.ImageClassification.Model"
APP_COMPONENT = "com.greengrass.SageMakerEdgeManager.ImageClassification"
PREDICTION_TOPIC = "gg/sageMakerEdgeManager/image-classification"
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# The edge client's settings the recipe carries as defaults (edge_client.config keys). model_dir and
# source left empty mean "the model component's artifact" and "the images shipped with the app".
DEFAULT_SETTINGS: dict[str, Any] = {
    "topic": PREDICTION_TOPIC,
    "threshold": 0.3,
    "top_k": 5,
    "interval": 1.0,
    "loop": True,
    "model_dir": "",
    "source": "",
}
# What goes into the app archive: the agent and the parts of `actions` it imports (never tui,
# never the AWS provisioning code).
APP_PACKAGES = ("edge_client", "actions/inference", "actions/messages", "actions/mqtt")
APP_FILES = ("actions/__init__.py", "actions/errors.py")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class PackageSpec:
    """What to package.

    Attributes:
        artifact_dir: a compiled model directory (ONNX Runtime artifact or Neo/DLR output).
        model_component, app_component: component names (the runbook's by default).
        model_name: shown in descriptions; defaults to the manifest's name or the directory's.
        version: publish exactly this version (both components); None bumps the latest.
        bump: "patch", "minor" or "major" when `version` is None.
        settings: edge client settings merged over DEFAULT_SETTINGS (recipe DefaultConfiguration).
        images_dir: sample images to ship with the app (used when `source` is empty).
        python: the interpreter the recipe runs the edge client with on the device.
        command: how the recipe starts the client, instead of `<python> -m edge_client.cli` (which
            needs nothing installed: the archive holds the client); e.g. "edge-client" when the
            device has the edge-console[device] package installed.
        bucket: defaults to the setup bucket `ec2-scripts-<region>-<account>`.
    """

    artifact_dir: Path
    model_component: str = MODEL_COMPONENT
    app_component: str = APP_COMPONENT
    model_name: str | None = None
    version: str | None = None
    bump: str = "patch"
    settings: dict[str, Any] = field(default_factory=dict)
    images_dir: Path | None = None
    python: str = "python3"
    command: str | None = None
    bucket: str | None = None

    def validate(self) -> PackageSpec:
        """Check the spec before any call; return self. Raises ConfigError naming the setting."""
        if not Path(self.artifact_dir).is_dir() or not any(Path(self.artifact_dir).iterdir()):
            raise ConfigError(f"artifact_dir {self.artifact_dir} is not a compiled model directory; "
                              "compile first (edge-console compile) and pass its output directory.")
        for key in ("model_component", "app_component"):
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", getattr(self, key)):
                raise ConfigError(f"{key} {getattr(self, key)!r} is not a valid component name "
                                  "(1-128 letters, digits, '.', '_' or '-').")
        if self.model_component == self.app_component:
            raise ConfigError("model_component and app_component must differ.")
        if self.version is not None and not SEMVER.match(self.version):
            raise ConfigError(f"version {self.version!r} is not MAJOR.MINOR.PATCH, e.g. 1.0.0.")
        if self.bump not in ("patch", "minor", "major"):
            raise ConfigError(f"bump {self.bump!r} must be patch, minor or major.")
        if self.images_dir is not None and not Path(self.images_dir).is_dir():
            raise ConfigError(f"images_dir {self.images_dir} is not a directory.")
        settings = {**DEFAULT_SETTINGS, **self.settings}
        if not settings.get("source") and self.images_dir is None:
            raise ConfigError("The edge client needs images: pass images_dir (--images DIR) to ship sample images, "
                              "or set source (--set source=camera:0 or a folder on the device).")
        check_client_settings(settings)
        return self


def check_client_settings(settings: dict[str, Any]) -> None:
    """Check the edge client settings present in `settings` (package defaults, or a deployment merge).

    Raises:
        ConfigError: names the setting, says what it must be and shows an example.
    """
    if "threshold" in settings:
        threshold = settings["threshold"]
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ConfigError(f"threshold {threshold!r:.60} must be a number between 0 and 1 "
                              "(the runbook's is 0.3), e.g. --set threshold=0.5.")
    if "top_k" in settings:
        top_k = settings["top_k"]
        if not _is_number(top_k) or top_k != int(top_k) or top_k < 1:
            raise ConfigError(f"top_k {top_k!r:.60} must be a whole number, at least 1 "
                              "(the runbook's is 5), e.g. --set top_k=3.")
    if "interval" in settings:
        if not _is_number(settings["interval"]) or not 0 <= settings["interval"] < math.inf:
            raise ConfigError(f"interval {settings['interval']!r:.60} must be a number of seconds, 0 or more, "
                              "e.g. --set interval=1.0.")
    if "loop" in settings and not isinstance(settings["loop"], bool):
        raise ConfigError(f"loop {settings['loop']!r:.60} must be true or false, e.g. --set loop=false.")


def _is_number(value: Any) -> bool:
    """A real, finite number: JSON's numbers, not true/false, null, text or NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Published:
    """One published component version."""

    name: str
    version: str
    arn: str
    artifact_uri: str
    recipe_path: Path
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "arn": self.arn, "artifact_uri": self.artifact_uri,
                "recipe_path": str(self.recipe_path), "state": self.state}


def component_arn(ctx: Context, name: str, version: str | None = None) -> str:
    """The ARN of a component (or of one of its versions)."""
    arn = f"arn:aws:greengrass:{ctx.region}:{ctx.account_id}:components:{name}"
    return f"{arn}:versions:{version}" if version else arn


def versions(ctx: Context, name: str) -> list[str]:
    """Every published version of a component, oldest first (empty when it does not exist)."""
    out: list[str] = []
    try:
        for page in pages(ctx.client("greengrassv2"), "list_component_versions", f"list the versions of {name}",
                          arn=component_arn(ctx, name)):
            out += [v["componentVersion"] for v in page.get("componentVersions", [])]
    except NotFound:
        return []
    return sorted(set(out), key=_semver_key)


def _semver_key(version: str) -> tuple:
    match = SEMVER.match(version)
    return tuple(int(x) for x in match.groups()) if match else (-1, -1, -1, version)


def next_version(existing: list[str], bump: str = "patch") -> str:
    """The version after the highest of `existing` (1.0.0 when there is none)."""
    numeric = [_semver_key(v) for v in existing if SEMVER.match(v)]
    if not numeric:
        return "1.0.0"
    major, minor, patch = max(numeric)
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _zip_dir(source: Path, into: zipfile.ZipFile, prefix: str = "") -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
            info = zipfile.ZipInfo(f"{prefix}{path.relative_to(source).as_posix()}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            into.writestr(info, path.read_bytes())


def build_model_archive(artifact_dir: Path, out: Path) -> Path:
    """Zip the artifact directory's files at the archive root (deterministic: fixed dates, sorted)."""
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        _zip_dir(Path(artifact_dir), z)
    tmp.replace(out)
    return out


def build_app_archive(out: Path, settings: dict[str, Any], images_dir: Path | None) -> Path:
    """Zip the edge client (and what it imports), its config file and optional sample images.

    Inside: `edge_client/`, `actions/{inference,messages,mqtt}/`, `edge-client.json`, `images/`.
    """
    root = Path(__file__).resolve().parent.parent
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        for package in APP_PACKAGES:
            if (root / package).is_dir():
                _zip_dir(root / package, z, f"{package}/")
        for name in APP_FILES:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, (root / name).read_bytes())
        info = zipfile.ZipInfo("edge-client.json", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, json.dumps({k: v for k, v in settings.items() if v != ""}, indent=2, sort_keys=True))
        if images_dir is not None:
            for path in sorted(Path(images_dir).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    info = zipfile.ZipInfo(f"images/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
                    info.external_attr = 0o644 << 16
                    z.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def env_name(key: str) -> str:
    """The edge client's environment variable for a setting key."""
    return "EDGE_CLIENT_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def model_recipe(name: str, version: str, uri: str, description: str) -> dict[str, Any]:
    """The model component's recipe: one zipped artifact, unarchived on the device, no process."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": description,
        "ComponentPublisher": "edge-console",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {},
                       "Artifacts": [{"Uri": uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER"}}]}],
    }


def app_recipe(name: str, version: str, uri: str, *, model_component: str, model_version: str,
               settings: dict[str, Any], python: str, command: str | None = None) -> dict[str, Any]:
    """The inference component's recipe: runs `edge-client run --config ...` with `settings` as defaults.

    Every setting is also passed as `EDGE_CLIENT_<KEY>` from `{configuration:/<key>}`, so a
    deployment's configuration merge reaches the client without a new version. An empty model_dir
    or source falls back to the model component's artifact and the images shipped with the app.
    """
    app = "{artifacts:decompressedPath}/edge-client"
    model = f"{{{model_component}:artifacts:decompressedPath}}/model"
    setenv = {env_name(k): f"{{configuration:/{k}}}" for k in settings}
    setenv["PYTHONUNBUFFERED"] = "1"
    run = "\n".join([
        "set -e",
        f'export PYTHONPATH="{app}${{PYTHONPATH:+:$PYTHONPATH}}"',
        f': "${{EDGE_CLIENT_MODEL_DIR:={model}}}"',
        f': "${{EDGE_CLIENT_SOURCE:={app}/images}}"',
        "export EDGE_CLIENT_MODEL_DIR EDGE_CLIENT_SOURCE",
        # `edge-client` is edge_client.cli; by default run it through the interpreter from the
        # archive, so nothing needs installing on the device.
        f'exec {command or python + " -m edge_client.cli"} run --config "{app}/edge-client.json"',
    ])
    topic = settings.get("topic", PREDICTION_TOPIC)
    defaults = dict(settings)
    defaults["accessControl"] = {"aws.greengrass.ipc.mqttproxy": {f"{name}:mqttproxy:1": {
        "policyDescription": "Publish predictions and the client's status to AWS IoT Core.",
        "operations": ["aws.greengrass#PublishToIoTCore"],
        "resources": [topic, "edge-console/*/status"]}}}
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "Image classification with the edge client: top-k predictions over MQTT.",
        "ComponentPublisher": "edge-console",
        "ComponentDependencies": {model_component: {"VersionRequirement": f"={model_version}",
                                                    "DependencyType": "HARD"}},
        "ComponentConfiguration": {"DefaultConfiguration": defaults},
        "Manifests": [{"Platform": {"os": "linux"},
                       "Artifacts": [{"Uri": uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER"}}],
                       "Lifecycle": {"Setenv": setenv,
                                     "Install": {"Script": f"{python} -c \"import numpy, onnxruntime, paho.mqtt\"",
                                                 "Timeout": 300},
                                     "Run": {"Script": run}}}],
    }


def _upload(ctx: Context, path: Path, bucket: str, key: str) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with aws_call(f"upload s3://{bucket}/{key}"):
        ctx.client("s3").upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
    return f"s3://{bucket}/{key}"


def _publish(ctx: Context, recipe: dict[str, Any]) -> tuple[str, str]:
    key, value = ctx.tag
    name, version = recipe["ComponentName"], recipe["ComponentVersion"]
    try:
        with aws_call(f"publish {name} {version}"):
            arn = ctx.client("greengrassv2").create_component_version(
                inlineRecipe=json.dumps(recipe).encode(), tags={key: value})["arn"]
    except NameConflict:
        raise NameConflict(f"{name} {version} is already published; leave the version out to bump it, "
                           "or pass a higher one.") from None
    return arn, wait_deployable(ctx, arn)


def wait_deployable(ctx: Context, arn: str, timeout: float = 120.0) -> str:
    """Wait until a component version is DEPLOYABLE; return its state. Raises AwsError if FAILED."""
    deadline = time.monotonic() + timeout
    while True:
        with aws_call(f"read {arn}"):
            status = ctx.client("greengrassv2").describe_component(arn=arn)["status"]
        state = status.get("componentState", "")
        if state == "DEPLOYABLE":
            return state
        if state == "FAILED":
            raise AwsError(f"Greengrass could not register {arn}: {status.get('message') or status.get('errors')}; "
                           "check that the artifacts exist in S3 and the recipe is valid, then package again.")
        if time.monotonic() > deadline:
            return state
        time.sleep(0.2 if ctx.is_sandbox else 2.0)


def package(ctx: Context, spec: PackageSpec) -> Iterator[Progress]:
    """Build, upload and publish both components, with progress.

    Yields:
        Progress events ("archive", "upload", "publish"); the last is DONE with data
        {"model": Published.to_dict(), "app": Published.to_dict()}.

    Raises:
        ConfigError: a bad spec. NameConflict: the version already exists. AwsError subclasses.
    """
    spec.validate()
    bucket = spec.bucket or f"ec2-scripts-{ctx.region}-{ctx.account_id}"
    artifact_dir = Path(spec.artifact_dir)
    manifest = artifact_dir / "manifest.json"
    model_name = spec.model_name
    if model_name is None and manifest.is_file():
        try:
            model_name = json.loads(manifest.read_text()).get("name")
        except ValueError:
            model_name = None
    model_name = model_name or artifact_dir.name
    settings = {**DEFAULT_SETTINGS, **spec.settings}

    model_versions, app_versions = versions(ctx, spec.model_component), versions(ctx, spec.app_component)
    if spec.version and (spec.version in model_versions or spec.version in app_versions):
        # Checked before anything is uploaded, so a taken version never leaves one component published.
        raise NameConflict(f"Version {spec.version} is already published for "
                           f"{spec.model_component if spec.version in model_versions else spec.app_component}; "
                           "leave the version out to bump it, or pass a higher one.")
    model_version = spec.version or next_version(model_versions, spec.bump)
    app_version = spec.version or next_version(app_versions, spec.bump)
    out = ctx.stack_dir / "packages"
    out.mkdir(parents=True, exist_ok=True)
    yield Progress("archive", RUNNING, f"archiving {artifact_dir}", 5.0)
    model_zip = build_model_archive(artifact_dir, out / f"{spec.model_component}-{model_version}.zip")
    app_zip = build_app_archive(out / f"{spec.app_component}-{app_version}.zip", settings, spec.images_dir)
    yield Progress("archive", DONE, f"model.zip {model_zip.stat().st_size} bytes, "
                   f"edge-client.zip {app_zip.stat().st_size} bytes", 20.0)

    model_uri = _upload(ctx, model_zip, bucket, f"artifacts/{spec.model_component}/{model_version}/model.zip")
    yield Progress("upload", RUNNING, f"uploaded {model_uri}", 45.0, {"uri": model_uri})
    app_uri = _upload(ctx, app_zip, bucket, f"artifacts/{spec.app_component}/{app_version}/edge-client.zip")
    yield Progress("upload", DONE, f"uploaded {app_uri}", 70.0, {"uri": app_uri})

    recipes = ctx.stack_dir / "recipes"
    m_recipe = model_recipe(spec.model_component, model_version, model_uri,
                            f"Compiled model {model_name}, packaged by edge-console.")
    a_recipe = app_recipe(spec.app_component, app_version, app_uri, model_component=spec.model_component,
                          model_version=model_version, settings=settings, python=spec.python,
                          command=spec.command)
    m_path = write_json(recipes / f"{spec.model_component}-{model_version}.json", m_recipe, 0o644)
    a_path = write_json(recipes / f"{spec.app_component}-{app_version}.json", a_recipe, 0o644)

    m_arn, m_state = _publish(ctx, m_recipe)
    yield Progress("publish", RUNNING, f"published {spec.model_component} {model_version} ({m_state})", 85.0,
                   {"arn": m_arn})
    a_arn, a_state = _publish(ctx, a_recipe)
    model = Published(spec.model_component, model_version, m_arn, model_uri, m_path, m_state)
    app = Published(spec.app_component, app_version, a_arn, app_uri, a_path, a_state)
    yield Progress("publish", DONE, f"published {spec.app_component} {app_version} ({a_state})", 100.0,
                   {"model": model.to_dict(), "app": app.to_dict()})


def list_components(ctx: Context, *, prefix: str = "") -> list[dict[str, Any]]:
    """Our account's components (PRIVATE scope) whose name starts with `prefix`, with latest version."""
    out = []
    for page in pages(ctx.client("greengrassv2"), "list_components", "list components", scope="PRIVATE"):
        for comp in page.get("components", []):
            if comp["componentName"].startswith(prefix):
                latest = comp.get("latestVersion", {})
                out.append({"name": comp["componentName"], "arn": comp["arn"],
                            "latest_version": latest.get("componentVersion"),
                            "created": latest.get("creationTimestamp")})
    return out
