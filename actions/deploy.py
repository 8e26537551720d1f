"""Deploy components to a thing group, follow each device to the end, cancel, roll back.

    dep_id = deploy.create(ctx, "mythinggroupname", {APP: "1.0.1", MODEL: "1.0.1"},
                           merge={APP: {"threshold": 0.5}})
    for event in deploy.follow(ctx, dep_id):     # one event per device state change
        ...
    deploy.rollback(ctx, "mythinggroupname")     # redeploys what the group had before

The chapter merges `{"DeviceFleetName": ..., "BucketName": ...}` into aws.greengrass.SageMakerEdgeManager;
Edge Manager is gone, so ours merges the edge client's settings into the inference component.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from actions.aws import aws_call, error_code, pages
from actions.context import Context
from actions.errors import ConfigError, NotFound
from actions.progress import DONE, FAILED, PENDING, RUNNING, Progress

# A device's execution of a deployment ends in one of these (Greengrass's coreDeviceExecutionStatus).
SUCCESS = ("SUCCEEDED", "COMPLETED")
FAILURE = ("FAILED", "TIMED_OUT", "CANCELED", "REJECTED")


@dataclass(frozen=True)
class DeviceState:
    """Where one device is with one deployment."""

    device: str
    status: str  # QUEUED (not picked up yet), IN_PROGRESS, SUCCEEDED, FAILED, ...
    reason: str = ""
    updated: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in SUCCESS + FAILURE


def thing_group_arn(ctx: Context, group: str) -> str:
    """The ARN of a thing group (looked up, so a missing group is a NotFound with a hint)."""
    with aws_call(f"find the thing group {group}"):
        try:
            return ctx.client("iot").describe_thing_group(thingGroupName=group)["thingGroupArn"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise NotFound(f"The thing group {group} does not exist; run `edge-console setup apply` or pass "
                               "--group with an existing group.") from None
            raise


def create(ctx: Context, group: str, components: dict[str, str], *, merge: dict[str, dict] | None = None,
           reset: dict[str, list[str]] | None = None, name: str | None = None) -> str:
    """Deploy `components` ({name: version}) to a thing group; return the deployment ID.

    Args:
        group: the thing group name.
        components: component name -> version.
        merge: component name -> configuration to merge (e.g. the edge client's settings).
        reset: component name -> JSON pointers to reset to the recipe defaults.
        name: the deployment's name (default `<stack>-<group>`).

    Raises:
        ConfigError: nothing to deploy, or a merge for a component not deployed.
        NotFound: the group or a component version does not exist.
    """
    if not components:
        raise ConfigError("Nothing to deploy: name at least one component and version.")
    if merge is not None and (not isinstance(merge, dict) or not all(isinstance(v, dict) for v in merge.values())):
        raise ConfigError('The configuration merge must be a JSON object {"component": {...}}: each component '
                          "name maps to an object of settings.")
    if reset is not None and (not isinstance(reset, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in reset.values())):
        raise ConfigError('The configuration reset must map each component name to a list of JSON pointers, '
                          'e.g. {"component": ["/threshold"]}.')
    for comp in set(merge or {}) | set(reset or {}):
        if comp not in components:
            raise ConfigError(f"A configuration update names {comp}, which is not in the deployment; add it.")
    spec: dict[str, Any] = {}
    for comp, version in components.items():
        spec[comp] = {"componentVersion": version}
        update: dict[str, Any] = {}
        if merge and comp in merge:
            update["merge"] = json.dumps(merge[comp])
        if reset and comp in reset:
            update["reset"] = list(reset[comp])
        if update:
            spec[comp]["configurationUpdate"] = update
    arn = thing_group_arn(ctx, group)
    key, value = ctx.tag
    with aws_call(f"deploy to {group}"):
        return ctx.client("greengrassv2").create_deployment(
            targetArn=arn, deploymentName=name or f"{ctx.stack}-{group}", components=spec,
            tags={key: value})["deploymentId"]


def get(ctx: Context, deployment_id: str) -> dict[str, Any]:
    """The deployment as Greengrass describes it (status, target, components, times)."""
    with aws_call(f"read the deployment {deployment_id}"):
        return ctx.client("greengrassv2").get_deployment(deploymentId=deployment_id)


def core_devices(ctx: Context, group_arn: str) -> list[dict[str, Any]]:
    """Every Greengrass core device in a thing group (all pages)."""
    out: list[dict[str, Any]] = []
    for page in pages(ctx.client("greengrassv2"), "list_core_devices", "list the core devices",
                      thingGroupArn=group_arn, PaginationConfig={"PageSize": 100}):
        out += page.get("coreDevices", [])
    return out


def device_state(ctx: Context, device: str, deployment_id: str) -> DeviceState:
    """How far one device is with one deployment (QUEUED when it has not picked it up yet)."""
    for page in pages(ctx.client("greengrassv2"), "list_effective_deployments", f"read the deployments of {device}",
                      coreDeviceThingName=device):
        for row in page.get("effectiveDeployments", []):
            if row.get("deploymentId") == deployment_id:
                details = row.get("statusDetails") or {}
                reason = row.get("reason") or "; ".join(details.get("errorStack") or [])
                return DeviceState(device, row["coreDeviceExecutionStatus"], reason or "",
                                   row.get("modifiedTimestamp"))
    return DeviceState(device, "QUEUED")


def follow(ctx: Context, deployment_id: str, *, timeout: float = 900.0, poll: float | None = None,
           devices: list[str] | None = None) -> Iterator[Progress]:
    """Follow a deployment on every core device of its target until each one ends.

    Yields:
        Progress(step=<device>, state=running|done|failed, message=<status and reason>) whenever a
        device changes, then a final Progress("deployment", DONE or FAILED, ...) whose data maps each
        device to its status. A device that never reports within `timeout` ends as TIMED_OUT.
    """
    poll = poll if poll is not None else (0.3 if ctx.is_sandbox else 5.0)
    dep = get(ctx, deployment_id)
    target = dep["targetArn"]
    if devices is not None:
        names = list(devices)
    elif ":thing/" in target:  # a deployment to one core device
        names = [target.rsplit("/", 1)[-1]]
    else:
        names = [d["coreDeviceThingName"] for d in core_devices(ctx, target)]
    if not names:
        yield Progress("deployment", FAILED, f"{deployment_id}: the target has no core devices yet", None,
                       {"deployment_id": deployment_id, "devices": {}})
        return
    seen: dict[str, DeviceState] = {}
    deadline = time.monotonic() + timeout
    while True:
        for name in names:
            if name in seen and seen[name].finished:
                continue
            state = device_state(ctx, name, deployment_id)
            if seen.get(name) != state:
                seen[name] = state
                phase = DONE if state.status in SUCCESS else FAILED if state.status in FAILURE else \
                    PENDING if state.status == "QUEUED" else RUNNING
                done = sum(s.finished for s in seen.values())
                reason = state.reason if state.reason and state.reason != "SUCCESSFUL" else ""
                yield Progress(name, phase, f"{state.status}{': ' + reason if reason else ''}",
                               round(100 * done / len(names), 1), {"deployment_id": deployment_id,
                                                                  "status": state.status, "reason": state.reason})
        if all(name in seen and seen[name].finished for name in names):
            break
        if time.monotonic() > deadline:
            for name in names:
                if not seen[name].finished:
                    seen[name] = DeviceState(name, "TIMED_OUT", f"no result within {int(timeout)} s")
                    yield Progress(name, FAILED, seen[name].reason, None, {"status": "TIMED_OUT"})
            break
        time.sleep(poll)
    summary = {name: seen[name].status for name in names}
    failed = [n for n, s in summary.items() if s not in SUCCESS]
    message = (f"{deployment_id}: {len(names) - len(failed)}/{len(names)} devices succeeded"
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    yield Progress("deployment", FAILED if failed else DONE, message, 100.0,
                   {"deployment_id": deployment_id, "devices": summary})


def cancel(ctx: Context, deployment_id: str) -> str:
    """Cancel a deployment (devices that already applied it keep it); return its new status."""
    with aws_call(f"cancel the deployment {deployment_id}"):
        ctx.client("greengrassv2").cancel_deployment(deploymentId=deployment_id)
    return get(ctx, deployment_id).get("deploymentStatus", "CANCELED")


def history(ctx: Context, group: str) -> list[dict[str, Any]]:
    """The group's deployments, newest first (ID, name, status, creation time, latest flag)."""
    arn = thing_group_arn(ctx, group)
    out: list[dict[str, Any]] = []
    for page in pages(ctx.client("greengrassv2"), "list_deployments", f"list the deployments of {group}",
                      targetArn=arn, historyFilter="ALL"):
        out += page.get("deployments", [])
    return sorted(out, key=lambda d: d.get("creationTimestamp") or datetime.min, reverse=True)


def rollback(ctx: Context, group: str) -> str:
    """Deploy again what the group had before its latest deployment; return the new deployment ID.

    The previous deployment is the newest one before the latest that was not canceled. Its
    components, versions and configuration updates are deployed as a new revision.

    Raises:
        NotFound: the group has no earlier deployment to return to.
    """
    deployments = history(ctx, group)
    if len(deployments) < 2:
        raise NotFound(f"The thing group {group} has no earlier deployment to roll back to; deploy a version "
                       "explicitly instead.")
    previous = next((d for d in deployments[1:] if d.get("deploymentStatus") != "CANCELED"), None)
    if previous is None:
        raise NotFound(f"Every earlier deployment of {group} was canceled; deploy a version explicitly instead.")
    dep = get(ctx, previous["deploymentId"])
    key, value = ctx.tag
    with aws_call(f"roll {group} back to {previous['deploymentId']}"):
        return ctx.client("greengrassv2").create_deployment(
            targetArn=dep["targetArn"], deploymentName=f"{ctx.stack}-{group}-rollback",
            components=dep.get("components", {}), tags={key: value})["deploymentId"]
