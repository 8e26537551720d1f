"""The IAM documents of the edge server's role: the runbook's, and our least-privilege ones.

Two presets:
- `runbook`: the chapter's managed policies and its `GreengrassComponentAccessPolicy` (Resource "*"),
  minus AmazonSageMakerEdgeDeviceFleetPolicy (see OMITTED).
- `least-privilege` (default): inline policies that name only our bucket, our thing group, our
  thing, our TES role and role alias, and the actions the edge server calls; they pass `parliament`
  with no findings (tests/actions/test_policies.py holds them to that).
"""

from __future__ import annotations

import importlib.resources
import json
import sys
import types
from dataclasses import dataclass
from typing import Any

PRESETS = ("least-privilege", "runbook")

# The chapter's trust policy, unchanged: EC2 (the edge server), IoT credentials provider (Greengrass
# token exchange) and SageMaker (the compilation job's role).
TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        for service in ("ec2.amazonaws.com", "credentials.iot.amazonaws.com", "sagemaker.amazonaws.com")
    ],
}

# The Greengrass token exchange role is assumed by the IoT credentials provider only.
TES_TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "credentials.iot.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}

# The runbook's inline policy, as printed in the chapter.
RUNBOOK_COMPONENT_ACCESS: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "GreengrassComponentAccess", "Effect": "Allow",
                   "Action": ["greengrass:CreateComponentVersion", "greengrass:DescribeComponent"],
                   "Resource": "*"}],
}

# The chapter's managed policies (step 16), with their real ARNs.
RUNBOOK_MANAGED = (
    "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess",
    "arn:aws:iam::aws:policy/service-role/AWSIoTLogging",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/service-role/AWSIoTRuleActions",
    "arn:aws:iam::aws:policy/service-role/AWSIoTThingsRegistration",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)

# What the chapter attaches that we do not, and why; the plan shows these lines.
OMITTED = {
    "arn:aws:iam::aws:policy/service-role/AmazonSageMakerEdgeDeviceFleetPolicy":
        "left out: SageMaker Edge Manager was shut down on 2024-04-26, so its device-fleet policy "
        "grants nothing that still works",
    "SageMakerGreenGrassV2MinimalResourcePolicy":
        "left out: the chapter's customer-managed policy lives in its GitHub repository; the "
        "least-privilege preset writes out what the edge server actually calls instead",
}

# Session Manager / Run Command on the edge server (logs, shell) need this AWS-managed policy in
# both presets; AWS keeps it minimal for the SSM agent, and writing our own copy would drift.
SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"

# The IoT policies the Greengrass installer creates and attaches when it provisions the core.
GG_THING_POLICY = "GreengrassV2IoTThingPolicy"


@dataclass(frozen=True)
class Scope:
    """The names a least-privilege policy may name."""

    partition: str
    region: str
    account: str
    bucket: str
    thing_name: str
    thing_group: str
    tes_role: str
    tes_role_alias: str
    component_prefix: str
    deploy_dev_tools: bool = False

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"


def least_privilege(scope: Scope) -> dict[str, dict[str, Any]]:
    """The inline policies of the edge server's role under the least-privilege preset.

    Args:
        scope: our bucket, thing, thing group, TES role and alias, account and region.

    Returns:
        {policy name: policy document}.
    """
    iot = lambda r: scope.arn("iot", r)  # noqa: E731 - a local shorthand keeps the statements readable
    thing, group = iot(f"thing/{scope.thing_name}"), iot(f"thinggroup/{scope.thing_group}")
    provision: list[dict[str, Any]] = [
        {"Sid": "CreateOurThing", "Effect": "Allow",
         "Action": ["iot:CreateThing", "iot:DescribeThing", "iot:AddThingToThingGroup"],
         "Resource": [thing, group]},
        {"Sid": "ReadOurGroupAndAlias", "Effect": "Allow",
         "Action": ["iot:DescribeThingGroup", "iot:DescribeRoleAlias"],
         "Resource": [group, iot(f"rolealias/{scope.tes_role_alias}")]},
        {"Sid": "GreengrassIoTPolicies", "Effect": "Allow",
         "Action": ["iot:CreatePolicy", "iot:GetPolicy", "iot:AttachPolicy"],
         "Resource": [iot(f"policy/{GG_THING_POLICY}"),
                      iot(f"policy/GreengrassTESCertificatePolicy{scope.tes_role_alias}"), iot("cert/*")]},
        # These calls take no resource ARN in IAM's service definition, so "*" is the only form
        # that works (parliament checks this against the same definition).
        {"Sid": "CallsWithoutResources", "Effect": "Allow",
         "Action": ["iot:CreateKeysAndCertificate", "iot:DescribeEndpoint", "iot:AttachThingPrincipal",
                    "sts:GetCallerIdentity"],
         "Resource": "*"},
        {"Sid": "ReadTokenExchangeRole", "Effect": "Allow", "Action": ["iam:GetRole"],
         "Resource": scope.arn("iam", f"role/{scope.tes_role}", regional=False)},
    ]
    if scope.deploy_dev_tools:
        # DEPLOY_DEV_TOOLS=true makes the installer deploy the Greengrass CLI to our group.
        # CreateDeployment has no resource type in IAM's definition, hence "*".
        provision.append({"Sid": "DeployDevTools", "Effect": "Allow", "Action": ["greengrass:CreateDeployment"],
                          "Resource": "*"})
    bucket = f"arn:{scope.partition}:s3:::{scope.bucket}"
    return {
        "EdgeConsoleScriptsAccess": {"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadSetupScripts", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": f"{bucket}/scripts/*"},
            {"Sid": "ListSetupScripts", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": ["scripts/*", "scripts/"]}}},
        ]},
        # The same role runs SageMaker Neo compilation jobs (the runbook's trust policy names
        # sagemaker.amazonaws.com): read the uploaded model, write the compiled one.
        "EdgeConsoleCompilationAccess": {"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadModels", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket}/models/*"},
            {"Sid": "WriteCompiledModels", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": f"{bucket}/compiled/*"},
            {"Sid": "FindModelPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": bucket},
            {"Sid": "CompilationLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [scope.arn("logs", "log-group:/aws/sagemaker/CompilationJobs"),
                          scope.arn("logs", "log-group:/aws/sagemaker/CompilationJobs:log-stream:*")]},
        ]},
        "EdgeConsoleGreengrassProvisioning": {"Version": "2012-10-17", "Statement": provision},
        "GreengrassComponentAccessPolicy": {"Version": "2012-10-17", "Statement": [
            {"Sid": "GreengrassComponentAccess", "Effect": "Allow",
             "Action": ["greengrass:CreateComponentVersion", "greengrass:DescribeComponent"],
             "Resource": [scope.arn("greengrass", f"components:{scope.component_prefix}*"),
                          scope.arn("greengrass", f"components:{scope.component_prefix}*:versions:*")]},
        ]},
    }


def tes_role_policy(scope: Scope) -> dict[str, Any]:
    """The token exchange role's policy: fetch our component artifacts, write Greengrass logs."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ComponentArtifacts", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": f"arn:{scope.partition}:s3:::{scope.bucket}/artifacts/*"},
        {"Sid": "GreengrassLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [scope.arn("logs", "log-group:/aws/greengrass/*"),
                      scope.arn("logs", "log-group:/aws/greengrass/*:log-stream:*")]},
    ]}


def role_policies(preset: str, scope: Scope) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]]:
    """The inline documents and managed policy ARNs the role gets under `preset`.

    Raises:
        ConfigError: the preset is not one of PRESETS.
    """
    if preset == "runbook":
        return {"GreengrassComponentAccessPolicy": RUNBOOK_COMPONENT_ACCESS}, RUNBOOK_MANAGED
    if preset == "least-privilege":
        return least_privilege(scope), (SSM_CORE,)
    from actions.errors import ConfigError

    raise ConfigError(f"Unknown policy preset {preset!r}; use one of: {', '.join(PRESETS)}.")


def _parliament():
    # parliament 1.6 still imports pkg_resources, which setuptools >= 81 no longer ships; it only
    # uses resource_filename, which importlib.resources answers the same way.
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
            sys.modules["pkg_resources"] = shim
    import parliament

    return parliament


def lint(document: dict[str, Any]) -> list[str]:
    """Findings of the IAM policy linter `parliament` on `document` (empty when clean).

    Each finding is one line: "ISSUE: detail".
    """
    policy = _parliament().analyze_policy_string(json.dumps(document))
    return [f"{f.issue}: {f.detail}" for f in policy.findings]


def normalize(document: Any) -> Any:
    """A canonical form of a policy document, so two equal policies compare equal.

    AWS returns single-element lists as strings and may reorder nothing else we rely on; we sort
    lists of strings and drop the wrapper differences.
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return document
    if isinstance(document, dict):
        return {k: normalize(v) for k, v in document.items()}
    if isinstance(document, list):
        items = [normalize(v) for v in document]
        if all(isinstance(v, str) for v in items):
            return sorted(items) if len(items) != 1 else items[0]
        return items
    return document
