"""The IAM documents of the edge server's role and the Neo compilation role: the runbook's, and ours.

Two presets:
- `runbook`: one role, as the chapter has it: trusted by EC2, the IoT credentials provider and
  SageMaker (compile passes it to Neo), with the chapter's managed policies and its
  `GreengrassComponentAccessPolicy` (Resource "*"), minus AmazonSageMakerEdgeDeviceFleetPolicy
  (see OMITTED). The plan says why it stays one role and what that risks (SINGLE_ROLE).
- `least-privilege` (default): two roles. The edge server's (EC2 and the IoT credentials provider)
  reads the setup scripts and the compiled models and provisions its Greengrass core; a separate
  compilation role, trusted by sagemaker.amazonaws.com only and only for this account's compilation
  jobs in the region (aws:SourceAccount, aws:SourceArn), reads `models/`, writes `compiled/` and
  its CloudWatch logs. So a compromised edge server cannot replace a compiled model. Every inline
  policy names only our bucket, thing group, thing, TES role and role alias, and passes
  `parliament` with no findings (tests/actions/test_policies.py holds them to that).
"""

from __future__ import annotations

import importlib.resources
import json
import sys
import types
from dataclasses import dataclass
from typing import Any

PRESETS = ("least-privilege", "runbook")

# The S3 prefixes of the stack's bucket, as compile and setup name them.
MODELS_PREFIX, COMPILED_PREFIX, SCRIPTS_PREFIX = "models/", "compiled/", "scripts/"

# The chapter's trust policy, unchanged (the runbook preset): EC2 (the edge server), IoT credentials
# provider (Greengrass token exchange) and SageMaker (the compilation job's role).
TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        for service in ("ec2.amazonaws.com", "credentials.iot.amazonaws.com", "sagemaker.amazonaws.com")
    ],
}

# The edge server's role under the least-privilege preset: EC2 only. SageMaker assumes the
# compilation role instead (compile_trust_policy), and the IoT credentials provider the token
# exchange role (TES_TRUST_POLICY), so neither needs this one.
EDGE_TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [s for s in TRUST_POLICY["Statement"] if s["Principal"]["Service"] == "ec2.amazonaws.com"],
}

# Why the runbook preset keeps one role for the edge server and Neo, and what that risks; the plan
# shows it beside the other runbook notes (OMITTED). In the chapter the SageMaker trust served its
# Edge Manager device fleet (gone) and its notebook compiled as the Studio execution role, which
# edge-console does not have; this role is the one the chapter grants SageMaker and S3 to.
SINGLE_ROLE = ("sagemaker.amazonaws.com: kept in the edge server role's trust policy as the chapter has it, and "
               "compile passes that role to Neo; a separate compilation role would narrow nothing here, because the "
               "chapter's AmazonS3FullAccess already lets the edge server write every object. Risk: anything "
               "on the edge server (or holding its credentials) can overwrite compiled/* and so choose the "
               "model every device runs; --preset least-privilege splits off a compilation role trusted by "
               "SageMaker only")

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

    The edge server may read the compiled models but not write them: Neo writes them, as the
    compilation role (compile_role_policies).

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
             "Resource": f"{bucket}/{SCRIPTS_PREFIX}*"},
            {"Sid": "ListSetupScripts", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": [f"{SCRIPTS_PREFIX}*", SCRIPTS_PREFIX]}}},
        ]},
        # Read, never write: the chapter deploys from the compiled model's S3 path, so the edge
        # server may fetch it; only the compilation role (Neo) writes there.
        "EdgeConsoleCompiledModelsRead": {"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadCompiledModels", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": f"{bucket}/{COMPILED_PREFIX}*"},
            {"Sid": "ListCompiledModels", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": [f"{COMPILED_PREFIX}*", COMPILED_PREFIX]}}},
        ]},
        "EdgeConsoleGreengrassProvisioning": {"Version": "2012-10-17", "Statement": provision},
        "GreengrassComponentAccessPolicy": {"Version": "2012-10-17", "Statement": [
            {"Sid": "GreengrassComponentAccess", "Effect": "Allow",
             "Action": ["greengrass:CreateComponentVersion", "greengrass:DescribeComponent"],
             "Resource": [scope.arn("greengrass", f"components:{scope.component_prefix}*"),
                          scope.arn("greengrass", f"components:{scope.component_prefix}*:versions:*")]},
        ]},
    }


def compile_trust_policy(scope: Scope) -> dict[str, Any]:
    """The compilation role's trust policy: SageMaker only, for compilation jobs of our account and region.

    aws:SourceArn and aws:SourceAccount are the confused-deputy guards AWS documents for Neo
    (SageMaker developer guide, "Cross-service confused deputy prevention", SageMaker Neo): SageMaker
    may assume the role only on behalf of a compilation job of this account in this region. Job
    names are the operator's (--job-name), so the ARN ends in "*".
    """
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole",
         "Condition": {"StringEquals": {"aws:SourceAccount": scope.account},
                       "ArnLike": {"aws:SourceArn": scope.arn("sagemaker", "compilation-job/*")}}},
    ]}


def compile_role_policies(scope: Scope) -> dict[str, dict[str, Any]]:
    """The compilation role's inline policy: what a Neo job does with it, and nothing else.

    Neo reads the uploaded model (`models/`), writes the compiled one (`compiled/`) and its logs
    (/aws/sagemaker/CompilationJobs); it may list the bucket and ask for its region.
    """
    bucket = f"arn:{scope.partition}:s3:::{scope.bucket}"
    return {"EdgeConsoleCompilationAccess": {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadModels", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket}/{MODELS_PREFIX}*"},
        {"Sid": "WriteCompiledModels", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": f"{bucket}/{COMPILED_PREFIX}*"},
        {"Sid": "FindModelPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": bucket},
        {"Sid": "CompilationLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [scope.arn("logs", "log-group:/aws/sagemaker/CompilationJobs"),
                      scope.arn("logs", "log-group:/aws/sagemaker/CompilationJobs:log-stream:*")]},
    ]}}


def edge_trust_policy(preset: str) -> dict[str, Any]:
    """The edge server role's trust policy under `preset`: the chapter's, or without SageMaker."""
    return TRUST_POLICY if preset == "runbook" else EDGE_TRUST_POLICY


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


def lint_trust(document: dict[str, Any], role_arn: str) -> list[str]:
    """parliament's findings on a trust policy's actions and conditions (empty when clean).

    parliament reads identity policies only, so each statement is checked as the same grant
    written on the role itself: no Principal, `role_arn` as Resource. Unknown or misspelt condition
    keys (aws:SourceArn, aws:SourceAccount) are what this catches.
    """
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    as_identity = {"Version": document.get("Version", "2012-10-17"), "Statement": [
        {k: v for k, v in st.items() if k != "Principal"} | {"Resource": role_arn} for st in statements]}
    return lint(as_identity)


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
