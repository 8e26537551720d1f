"""Settings of the setup plan, the Greengrass `env` file, and the edge server's scripts."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from actions.errors import ConfigError
from actions.setup.policies import PRESETS

# On-demand price of the edge server, so the console can say what it costs to leave it running.
# Source: AWS EC2 on-demand pricing page, Linux, us-east-1 (N. Virginia), c5.large, read 2026-11-24.
# Other regions differ (e.g. eu-west-1 is USD 0.096); we never look prices up over the network.
C5_LARGE_PRICE_USD_PER_HOUR = 0.085
PRICE_REGION = "us-east-1"
PRICE_DATE = "2026-11-24"

# Amazon Linux 2 (the chapter's AMI) reached end of support on 2026-06-30; Amazon Linux 2023 is
# the current one. Both are looked up through AWS's public SSM parameters, never hard-coded.
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
RUNBOOK_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/amzn2-ami-kernel-5.10-hvm-x86_64-gp2"

COMPONENT_PREFIX = "com.greengrass.SageMakerEdgeManager.ImageClassification"
# The compilation role is named after the edge server's role unless named outright.
COMPILE_ROLE_SUFFIX = "-NeoCompilation"
# IoT thing and group names: the runbook asks for lower case; AWS allows [a-zA-Z0-9:_-], 1-128.
LOWER_NAME = re.compile(r"^[a-z0-9:_-]{1,128}$")
# Allow-lists of what may reach the root user data and the env file (sourced by bash, read by
# `docker --env-file`): every allowed value is a single shell word that needs no quoting.
IMAGE = re.compile(r"[A-Za-z0-9._:/@-]{1,255}")
ROOT_PATH = re.compile(r"/[A-Za-z0-9._/-]{0,254}")
USER_GROUP = re.compile(r"[a-z_][a-z0-9_-]{0,31}:[a-z_][a-z0-9_-]{0,31}")
IAM_ROLE = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")
ROLE_ALIAS = re.compile(r"[A-Za-z0-9_=,@-]{1,128}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
ENV_KEYS = ("GGC_ROOT_PATH", "AWS_REGION", "PROVISION", "THING_NAME", "THING_GROUP_NAME", "TES_ROLE_NAME",
            "TES_ROLE_ALIAS_NAME", "COMPONENT_DEFAULT_USER", "DEPLOY_DEV_TOOLS")


@dataclass(frozen=True)
class SetupConfig:
    """What `edge-console setup` creates; the defaults are the runbook's names.

    Attributes:
        role_name: the edge server's IAM role (and instance profile).
        preset: "least-privilege" (default) or "runbook".
        compile_role_name: the SageMaker Neo compilation role, made under the least-privilege
            preset only (the runbook's compile uses `role_name`); None means
            `<role_name>-NeoCompilation` (see `compile_role`), so stacks with their own role
            names get their own compilation role too.
        bucket: the scripts and artifacts bucket; None means `ec2-scripts-<region>-<account>`.
        thing_name, thing_group_name: the Greengrass core's IoT thing and group (lower case).
        tes_role_name, tes_role_alias_name: the token exchange role and its IoT role alias.
        component_default_user: the user:group Greengrass runs components as.
        deploy_dev_tools: deploy the Greengrass CLI to the core. Off by default: a local CLI lets
            anyone on the box change deployments, and logs come through SSM instead.
        ggc_root_path: the nucleus's root on the edge server.
        provision: let the nucleus installer provision the thing and certificate.
        instance_name, instance_type, volume_gib, ami_parameter: the edge server.
        greengrass_image: the Docker image the start script runs.
        subnet_id: launch the edge server in this subnet (None: the default VPC's default subnet).
        teardown_timeout_s: at destroy, how long to wait for devices to remove our components.
    """

    role_name: str = "SageMakerGreenGrassV2MinimalResourceRole"
    preset: str = "least-privilege"
    compile_role_name: str | None = None
    bucket: str | None = None
    thing_name: str = "mything"
    thing_group_name: str = "mythinggroupname"
    tes_role_name: str = "GreengrassV2TokenExchangeRole"
    tes_role_alias_name: str = "GreengrassCoreTokenExchangeRoleAlias"
    component_default_user: str = "ggc_user:ggc_group"
    deploy_dev_tools: bool = False
    ggc_root_path: str = "/greengrass/v2"
    provision: bool = True
    instance_name: str = "edge-server"
    instance_type: str = "c5.large"
    volume_gib: int = 20
    ami_parameter: str = AMI_PARAMETER
    greengrass_image: str = "amazon/aws-iot-greengrass:latest"
    component_prefix: str = COMPONENT_PREFIX
    subnet_id: str | None = None
    teardown_timeout_s: float = 120.0

    def validate(self) -> SetupConfig:
        """Check every setting; return self.

        Raises:
            ConfigError: the first invalid setting, named, with what to use instead.
        """
        for f in dataclasses.fields(self):  # values set directly, not through replace(), are checked too
            value = getattr(self, f.name)
            coerced = _coerce(f, value)
            if coerced is not value and not (type(value) is int and type(coerced) is float):
                raise ConfigError(f"{f.name} {value!r} is not a {f.type}; give text through --set or "
                                  "SetupConfig.replace(), which convert it.")
        for key in ("thing_name", "thing_group_name"):
            value = getattr(self, key)
            if not LOWER_NAME.match(value):
                raise ConfigError(f"{key} {value!r} is not valid: use 1-128 lower-case letters, digits, "
                                  "':', '_' or '-' (Greengrass provisioning expects lower case).")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} is unknown; use one of: {', '.join(PRESETS)}.")
        for key in ("role_name", "tes_role_name", "compile_role_name"):
            if getattr(self, key) is not None and not IAM_ROLE.fullmatch(getattr(self, key)):
                raise ConfigError(f"{key} {getattr(self, key)!r} is not a valid IAM role name (1-64 of letters, "
                                  "digits and +=,.@_-).")
        # Distinct under both presets: the runbook's apply and destroy remove a compilation role of ours.
        roles = [self.role_name, self.tes_role_name, self.compile_role]
        if len(set(roles)) != len(roles):
            raise ConfigError(f"role_name, tes_role_name and compile_role_name must be three different roles "
                              f"(got {', '.join(roles)}); each is trusted by different services.")
        if not ROLE_ALIAS.fullmatch(self.tes_role_alias_name):
            raise ConfigError(f"tes_role_alias_name {self.tes_role_alias_name!r} is not a valid IoT role alias "
                              "(1-128 of letters, digits and =,@_-).")
        if self.bucket is not None and not BUCKET.fullmatch(self.bucket):
            raise ConfigError(f"bucket {self.bucket!r} is not a valid S3 bucket name (3-63 lower-case "
                              "letters, digits, '.' and '-').")
        if not 8 <= self.volume_gib <= 16384:
            raise ConfigError(f"volume_gib {self.volume_gib} is out of range; use at least 8 (20 is the runbook's).")
        if not USER_GROUP.fullmatch(self.component_default_user):
            raise ConfigError(f"component_default_user {self.component_default_user!r} must be user:group, each "
                              "a Linux name of a-z, 0-9, '_' and '-' starting with a letter or '_', "
                              "e.g. ggc_user:ggc_group.")
        if not ROOT_PATH.fullmatch(self.ggc_root_path) or ".." in self.ggc_root_path.split("/"):
            raise ConfigError(f"ggc_root_path {self.ggc_root_path!r} must be an absolute path of letters, digits, "
                              "'.', '_', '-' and '/' (no '..'), e.g. /greengrass/v2.")
        if not IMAGE.fullmatch(self.greengrass_image):
            raise ConfigError(f"greengrass_image {self.greengrass_image!r} must be a Docker image reference of "
                              "letters, digits and ._:/@-, e.g. amazon/aws-iot-greengrass:latest.")
        if not self.ami_parameter.startswith("/aws/service/"):
            raise ConfigError(f"ami_parameter {self.ami_parameter!r} must be a public SSM parameter "
                              "under /aws/service/ (the AMI is never hard-coded).")
        return self

    def replace(self, **changes) -> SetupConfig:
        """A copy with `changes` applied, each converted to its setting's type.

        Values may be typed (True, 20) or text as an operator types it (`--set provision=no`):
        booleans take true/false/yes/no/1/0, whole numbers take digits, and an empty text clears
        an optional setting (bucket, subnet_id).

        Raises:
            ConfigError: an unknown key (the valid ones are listed) or a value of the wrong type.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ConfigError(f"Unknown setup setting(s): {', '.join(unknown)}; valid: {', '.join(sorted(fields))}.")
        return dataclasses.replace(self, **{k: _coerce(fields[k], v) for k, v in changes.items()})

    @property
    def compile_role(self) -> str:
        """The compilation role's name: `compile_role_name`, or `<role_name>-NeoCompilation` (cut to 64)."""
        if self.compile_role_name:
            return self.compile_role_name
        return self.role_name[: 64 - len(COMPILE_ROLE_SUFFIX)] + COMPILE_ROLE_SUFFIX

    def bucket_name(self, region: str, account: str) -> str:
        """The bucket to use: the configured one, or the runbook's `ec2-scripts-<region>-<account>`."""
        return self.bucket or f"ec2-scripts-{region}-{account}"


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """`value` as the type of setting `f`; ConfigError naming the setting and the form it takes."""
    kind = str(f.type)
    optional = kind.endswith("| None")
    kind = kind.removesuffix("| None").strip()
    shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ConfigError(f"{f.name} needs a value; it cannot be empty or null.")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{f.name} {shown} must be true or false (also yes/no, 1/0).")
    if kind == "int":
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            if len(value.strip().lstrip("+-")) > 9:  # int() of thousands of digits raises; no setting needs so many
                raise ConfigError(f"{f.name} {shown} is out of range, e.g. {f.name}={f.default}.")
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{f.name} {shown} must be a whole number, e.g. {f.name}={f.default}.")
    if kind == "float":
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number) or number < 0:
            raise ConfigError(f"{f.name} {shown} must be a number of seconds, 0 or more, e.g. {f.name}={f.default}.")
        return number
    if not isinstance(value, str):
        example = f", e.g. {f.name}={f.default}" if f.default is not None else ""
        raise ConfigError(f"{f.name} {shown} must be text{example}.")
    return value


def render_env(cfg: SetupConfig, region: str) -> str:
    """The Greengrass `env` file (the runbook's nine keys, in its order), validated first."""
    cfg.validate()
    values = {
        "GGC_ROOT_PATH": cfg.ggc_root_path,
        "AWS_REGION": region,
        "PROVISION": "true" if cfg.provision else "false",
        "THING_NAME": cfg.thing_name,
        "THING_GROUP_NAME": cfg.thing_group_name,
        "TES_ROLE_NAME": cfg.tes_role_name,
        "TES_ROLE_ALIAS_NAME": cfg.tes_role_alias_name,
        "COMPONENT_DEFAULT_USER": cfg.component_default_user,
        "DEPLOY_DEV_TOOLS": "true" if cfg.deploy_dev_tools else "false",
    }
    if not REGION.fullmatch(region or ""):
        raise ConfigError(f"region {region!r} is not an AWS region name, e.g. us-east-1.")
    # validate() allow-lists every value. The file is sourced by bash *and* read literally by
    # `docker --env-file` (which keeps quotes), so a value must be one shell word that needs no
    # quoting: shlex.quote() of it is itself. Anything else is refused, never written.
    for key, value in values.items():
        if shlex.quote(value) != value:
            raise ConfigError(f"{key} value {value!r} cannot go into the env file; use letters, digits and ._-/:@ only.")
    return "".join(f"{key}={shlex.quote(values[key])}\n" for key in ENV_KEYS)


def parse_env(text: str) -> dict[str, str]:
    """Read an `env` file back into a dict (ignores blank lines and comments)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def script(name: str) -> str:
    """The text of one of the edge server's scripts shipped in actions/setup/scripts/."""
    return (importlib.resources.files("actions.setup") / "scripts" / name).read_text()


SCRIPT_NAMES = ("install-greengrass.sh", "start-greengrass.sh")


def scripts(cfg: SetupConfig, region: str) -> dict[str, str]:
    """Every object under `scripts/` in the bucket: {file name: text}, the env file included."""
    files = {name: script(name) for name in SCRIPT_NAMES}
    files["env"] = render_env(cfg, region)
    return files


def user_data(cfg: SetupConfig, bucket: str) -> str:
    """The instance's user data: fetch the scripts from the bucket and run them (as root, at first boot)."""
    cfg.validate()
    if not BUCKET.fullmatch(bucket or ""):
        raise ConfigError(f"bucket {bucket!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, "
                          "'.' and '-').")
    return (
        "#!/bin/bash\n"
        "# edge-console: fetch the edge server's scripts and start the Greengrass nucleus.\n"
        "set -euo pipefail\n"
        "install -d -m 0750 /opt/edge-console\n"
        f"aws s3 cp {shlex.quote(f's3://{bucket}/scripts/')} /opt/edge-console/ --recursive\n"
        "bash /opt/edge-console/install-greengrass.sh\n"
        f"GREENGRASS_IMAGE={shlex.quote(cfg.greengrass_image)} bash /opt/edge-console/start-greengrass.sh\n"
    )
