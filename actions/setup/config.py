"""Settings of the setup plan, the Greengrass `env` file, and the edge server's scripts."""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from dataclasses import dataclass

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
# IoT thing and group names: the runbook asks for lower case; AWS allows [a-zA-Z0-9:_-], 1-128.
LOWER_NAME = re.compile(r"^[a-z0-9:_-]{1,128}$")
ENV_KEYS = ("GGC_ROOT_PATH", "AWS_REGION", "PROVISION", "THING_NAME", "THING_GROUP_NAME", "TES_ROLE_NAME",
            "TES_ROLE_ALIAS_NAME", "COMPONENT_DEFAULT_USER", "DEPLOY_DEV_TOOLS")


@dataclass(frozen=True)
class SetupConfig:
    """What `edge-console setup` creates; the defaults are the runbook's names.

    Attributes:
        role_name: the edge server's IAM role (and instance profile).
        preset: "least-privilege" (default) or "runbook".
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
        for key in ("thing_name", "thing_group_name"):
            value = getattr(self, key)
            if not LOWER_NAME.match(value):
                raise ConfigError(f"{key} {value!r} is not valid: use 1-128 lower-case letters, digits, "
                                  "':', '_' or '-' (Greengrass provisioning expects lower case).")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} is unknown; use one of: {', '.join(PRESETS)}.")
        if not re.fullmatch(r"[\w+=,.@-]{1,64}", self.role_name):
            raise ConfigError(f"role_name {self.role_name!r} is not a valid IAM role name (1-64 of letters, "
                              "digits and +=,.@_-).")
        if self.bucket is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise ConfigError(f"bucket {self.bucket!r} is not a valid S3 bucket name (3-63 lower-case "
                              "letters, digits, '.' and '-').")
        if not 8 <= self.volume_gib <= 16384:
            raise ConfigError(f"volume_gib {self.volume_gib} is out of range; use at least 8 (20 is the runbook's).")
        if ":" not in self.component_default_user:
            raise ConfigError(f"component_default_user {self.component_default_user!r} must be user:group, "
                              "e.g. ggc_user:ggc_group.")
        if not self.ami_parameter.startswith("/aws/service/"):
            raise ConfigError(f"ami_parameter {self.ami_parameter!r} must be a public SSM parameter "
                              "under /aws/service/ (the AMI is never hard-coded).")
        return self

    def replace(self, **changes) -> SetupConfig:
        """A copy with `changes` applied (unknown keys raise ConfigError)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"Unknown setup setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return dataclasses.replace(self, **changes)

    def bucket_name(self, region: str, account: str) -> str:
        """The bucket to use: the configured one, or the runbook's `ec2-scripts-<region>-<account>`."""
        return self.bucket or f"ec2-scripts-{region}-{account}"


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
    for key, value in values.items():
        if any(c in value for c in "\n\r\"'$` "):
            raise ConfigError(f"{key} value {value!r} contains a space, quote or newline; the env file cannot hold it.")
    return "".join(f"{key}={values[key]}\n" for key in ENV_KEYS)


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
    return (
        "#!/bin/bash\n"
        "# edge-console: fetch the edge server's scripts and start the Greengrass nucleus.\n"
        "set -euo pipefail\n"
        "install -d -m 0750 /opt/edge-console\n"
        f"aws s3 cp s3://{bucket}/scripts/ /opt/edge-console/ --recursive\n"
        "bash /opt/edge-console/install-greengrass.sh\n"
        f"GREENGRASS_IMAGE={cfg.greengrass_image} bash /opt/edge-console/start-greengrass.sh\n"
    )
