"""Find and remove what SageMaker Edge Manager (shut down 2024-04-26) left behind.

The chapter's notebook made, through Edge Manager:
- Greengrass components named `SagemakerEdgeManager<packaging job name>` (the packaging job's
  Greengrass V2 output);
- IoT role aliases `SageMakerEdge-<device fleet>` (one per device fleet);
- packaging outputs in S3: keys holding `-packaging-ggv2` (the job's name) or
  `SagemakerEdgeManager`, under the output location;
- deployments that still run the Edge Manager agent, the public `aws.greengrass.SageMakerEdgeManager`
  component (the chapter's step 5 of "deploy"): removing one revises the deployment without it.

Edge Manager's own APIs (device fleets, packaging jobs) no longer answer, so we look for what they
created in the services that remain. Our own components (`com.greengrass.SageMakerEdgeManager...`,
the runbook's names) never match: the prefixes are anchored at the start of the name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

from actions.aws import aws_call, error_code, pages
from actions.context import Context
from actions.progress import DONE, RUNNING, Progress

COMPONENT_PREFIX = "sagemakeredgemanager"  # compared in lower case
ROLE_ALIAS_PREFIX = "SageMakerEdge"
KEY_MARKS = ("-packaging-ggv2", "SagemakerEdgeManager")
AGENT_COMPONENT = "aws.greengrass.SageMakerEdgeManager"


@dataclass(frozen=True)
class Leftover:
    """One thing Edge Manager left.

    Attributes:
        kind: "component-version", "role-alias", "s3-object" or "deployment".
        name: what to show (component@version, alias name, s3://bucket/key, deployment and target).
        ref: what removal needs (version ARN, alias name, "bucket\\0key\\0versionId", deployment ID).
    """

    kind: str
    name: str
    ref: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _components(ctx: Context) -> list[Leftover]:
    gg, out = ctx.client("greengrassv2"), []
    for page in pages(gg, "list_components", "list components", scope="PRIVATE"):
        for comp in page.get("components", []):
            if comp["componentName"].lower().startswith(COMPONENT_PREFIX):
                for vpage in pages(gg, "list_component_versions", f"list the versions of {comp['componentName']}",
                                   arn=comp["arn"]):
                    out += [Leftover("component-version", f"{v['componentName']}@{v['componentVersion']}", v["arn"])
                            for v in vpage.get("componentVersions", [])]
    return out


def _role_aliases(ctx: Context) -> list[Leftover]:
    out = []
    with aws_call("list IoT role aliases"):
        for page in ctx.client("iot").get_paginator("list_role_aliases").paginate():
            out += [Leftover("role-alias", alias, alias) for alias in page.get("roleAliases", [])
                    if alias.startswith(ROLE_ALIAS_PREFIX)]
    return out


def _objects(ctx: Context, bucket: str) -> list[Leftover]:
    out = []
    with aws_call(f"list the objects of {bucket}"):
        try:
            for page in ctx.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    if any(mark in v["Key"] for mark in KEY_MARKS):
                        version = v.get("VersionId") or "null"
                        out.append(Leftover("s3-object", f"s3://{bucket}/{v['Key']} ({version})",
                                            f"{bucket}\0{v['Key']}\0{version}"))
        except Exception as exc:
            if error_code(exc) == "NoSuchBucket":
                return []
            raise
    return out


def _deployments(ctx: Context) -> list[Leftover]:
    gg, out = ctx.client("greengrassv2"), []
    with aws_call("list the latest deployments"):
        for page in gg.get_paginator("list_deployments").paginate(historyFilter="LATEST_ONLY"):
            for dep in page.get("deployments", []):
                if dep.get("deploymentStatus") in ("CANCELED", "INACTIVE"):
                    continue
                full = gg.get_deployment(deploymentId=dep["deploymentId"])
                if AGENT_COMPONENT in (full.get("components") or {}):
                    target = full.get("targetArn", "").rsplit(":", 1)[-1]
                    out.append(Leftover("deployment", f"{dep['deploymentId']} on {target} runs {AGENT_COMPONENT}",
                                        dep["deploymentId"]))
    return out


def find(ctx: Context, *, buckets: list[str] | None = None) -> list[Leftover]:
    """Every Edge Manager leftover: components, role aliases, and packaging outputs in `buckets`.

    Args:
        buckets: buckets to scan for packaging outputs (default: the setup bucket).
    """
    buckets = buckets if buckets is not None else [f"ec2-scripts-{ctx.region}-{ctx.account_id}"]
    found = _components(ctx) + _role_aliases(ctx) + _deployments(ctx)
    for bucket in buckets:
        found += _objects(ctx, bucket)
    return found


def _without_agent(ctx: Context, deployment_id: str) -> str:
    """Revise a deployment without the Edge Manager agent (same target, everything else kept)."""
    gg = ctx.client("greengrassv2")
    dep = gg.get_deployment(deploymentId=deployment_id)
    components = {k: v for k, v in (dep.get("components") or {}).items() if k != AGENT_COMPONENT}
    kwargs: dict[str, Any] = {"targetArn": dep["targetArn"], "components": components,
                              "deploymentName": f"{dep.get('deploymentName') or 'deployment'}-without-edge-manager"}
    for key in ("deploymentPolicies", "iotJobConfiguration"):
        if dep.get(key):
            kwargs[key] = dep[key]
    return gg.create_deployment(**kwargs)["deploymentId"]


def remove(ctx: Context, leftovers: list[Leftover]) -> Iterator[Progress]:
    """Delete the given leftovers (every object version too), yielding one event each.

    A leftover already gone counts as removed.
    """
    total = len(leftovers)
    for n, item in enumerate(leftovers, 1):
        with aws_call(f"remove {item.name}"):
            try:
                if item.kind == "component-version":
                    ctx.client("greengrassv2").delete_component(arn=item.ref)
                elif item.kind == "role-alias":
                    ctx.client("iot").delete_role_alias(roleAlias=item.ref)
                elif item.kind == "deployment":
                    _without_agent(ctx, item.ref)
                elif item.kind == "s3-object":
                    bucket, key, version = item.ref.split("\0")
                    kwargs = {"Bucket": bucket, "Key": key}
                    if version != "null":
                        kwargs["VersionId"] = version
                    ctx.client("s3").delete_object(**kwargs)
            except Exception as exc:
                if error_code(exc) not in ("ResourceNotFoundException", "NoSuchKey", "NoSuchVersion", "404"):
                    raise
        yield Progress("leftovers", RUNNING if n < total else DONE, f"removed {item.name}",
                       round(100 * n / total, 1), item.to_dict())
    if not total:
        yield Progress("leftovers", DONE, "nothing to remove", 100.0)
