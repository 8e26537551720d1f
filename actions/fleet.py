"""The fleet: a thing group's things and Greengrass core devices, side by side with what each
device's edge client last said about itself.

Two independent sources of "last seen" stand side by side, never merged into one number:
- `core_last_seen`: the Greengrass core device status time (the nucleus reporting to AWS);
- `client_last_seen`: the timestamp of the edge client's last status message (MQTT, retained).

    devices = fleet.list_fleet(ctx, "mythinggroupname", statuses=fleet.collect_statuses(transport))
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterator, Mapping

from actions.aws import aws_call, error_code
from actions.context import Context
from actions.errors import NotFound


@dataclass(frozen=True)
class Installed:
    """A component installed on a core device."""

    name: str
    version: str
    state: str


@dataclass(frozen=True)
class Effective:
    """A deployment as one core device sees it."""

    deployment_id: str
    name: str
    status: str
    reason: str
    updated: datetime | None


@dataclass(frozen=True)
class Device:
    """One device of the fleet, from every source we have.

    Attributes:
        name: the thing name.
        in_group: the thing is a member of the group (False: a core device reported in the group
            but the thing is not listed, e.g. removed meanwhile).
        core_status: HEALTHY / UNHEALTHY from Greengrass, None when the thing is not a core device.
        core_last_seen: Greengrass's last status update time.
        platform, architecture: as the nucleus reported them.
        components, deployments: installed components and effective deployments (None = not fetched).
        client: the last status message of the device's edge client (actions.messages.status.Status).
        client_last_seen: that message's timestamp.
    """

    name: str
    in_group: bool = True
    core_status: str | None = None
    core_last_seen: datetime | None = None
    platform: str | None = None
    architecture: str | None = None
    components: tuple[Installed, ...] | None = None
    deployments: tuple[Effective, ...] | None = None
    client: Any = None
    client_last_seen: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO strings)."""
        client = None
        if self.client is not None:
            c = self.client
            client = {"state": c.state, "model_name": c.model_name, "model_version": c.model_version,
                      "images_per_s": c.images_per_s, "inference_p95_ms": c.inference_ms[1],
                      "outbox_depth": c.outbox_depth, "dropped": c.dropped, "errors": c.errors,
                      "last_error": c.last_error}
        return {
            "name": self.name, "in_group": self.in_group, "core_status": self.core_status,
            "core_last_seen": self.core_last_seen.isoformat() if self.core_last_seen else None,
            "platform": self.platform, "architecture": self.architecture,
            "components": None if self.components is None else [c.__dict__ for c in self.components],
            "deployments": None if self.deployments is None else [
                {**d.__dict__, "updated": d.updated.isoformat() if d.updated else None} for d in self.deployments],
            "client": client,
            "client_last_seen": self.client_last_seen.isoformat() if self.client_last_seen else None,
        }


def things_in_group(ctx: Context, group: str) -> Iterator[str]:
    """Every thing name in a thing group, page by page (250 a page, IoT's maximum).

    Raises:
        NotFound: the group does not exist.
    """
    paginator = ctx.client("iot").get_paginator("list_things_in_thing_group")
    with aws_call(f"list the things in {group}"):
        try:
            for page in paginator.paginate(thingGroupName=group, PaginationConfig={"PageSize": 250}):
                yield from page.get("things", [])
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise NotFound(f"The thing group {group} does not exist; run `edge-console setup apply` "
                               "or pass --group with an existing group.") from None
            raise


def core_devices(ctx: Context, group: str) -> Iterator[dict[str, Any]]:
    """Every Greengrass core device in a thing group, page by page."""
    from actions.deploy import thing_group_arn

    arn = thing_group_arn(ctx, group)
    paginator = ctx.client("greengrassv2").get_paginator("list_core_devices")
    with aws_call(f"list the core devices in {group}"):
        for page in paginator.paginate(thingGroupArn=arn, PaginationConfig={"PageSize": 100}):
            yield from page.get("coreDevices", [])


def device_details(ctx: Context, name: str) -> tuple[tuple[Installed, ...], tuple[Effective, ...]]:
    """A core device's installed components and effective deployments (all pages)."""
    gg = ctx.client("greengrassv2")
    with aws_call(f"read the components of {name}"):
        installed = tuple(
            Installed(c["componentName"], c["componentVersion"], c.get("lifecycleState", ""))
            for page in gg.get_paginator("list_installed_components").paginate(coreDeviceThingName=name)
            for c in page.get("installedComponents", []))
        effective = tuple(
            Effective(d["deploymentId"], d.get("deploymentName", ""), d.get("coreDeviceExecutionStatus", ""),
                      d.get("reason", "") or "", d.get("modifiedTimestamp"))
            for page in gg.get_paginator("list_effective_deployments").paginate(coreDeviceThingName=name)
            for d in page.get("effectiveDeployments", []))
    return installed, effective


def _client_time(status: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(status.timestamp) if status.timestamp else None
    except (TypeError, ValueError):
        return None


def merge_statuses(devices: list[Device], statuses: Mapping[str, Any]) -> list[Device]:
    """Put each device's last edge-client status beside its Greengrass status.

    Devices that only the MQTT side knows (a client running outside Greengrass) are added with
    `in_group=False` and no core status.
    """
    by_name = {d.name: d for d in devices}
    out = [replace(d, client=statuses.get(d.name), client_last_seen=_client_time(statuses[d.name]))
           if d.name in statuses else d for d in devices]
    out += [Device(name, in_group=False, client=s, client_last_seen=_client_time(s))
            for name, s in sorted(statuses.items()) if name not in by_name]
    return out


def list_fleet(ctx: Context, group: str, *, details: bool = False, statuses: Mapping[str, Any] | None = None,
               workers: int = 4) -> list[Device]:
    """The fleet of a thing group: its things, their core device status, and (optionally) details.

    Args:
        group: the thing group.
        details: also fetch installed components and effective deployments per core device
            (two more calls a device, run on `workers` threads).
        statuses: device name -> last edge-client Status (from `collect_statuses`), merged in.

    Returns:
        Devices sorted by name.
    """
    things = set(things_in_group(ctx, group))
    cores = {d["coreDeviceThingName"]: d for d in core_devices(ctx, group)}
    devices = []
    for name in sorted(things | set(cores)):
        core = cores.get(name, {})
        devices.append(Device(name, in_group=name in things, core_status=core.get("status"),
                              core_last_seen=core.get("lastStatusUpdateTimestamp"),
                              platform=core.get("platform"), architecture=core.get("architecture")))
    if details and cores:
        names = [d.name for d in devices if d.core_status is not None]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            found = dict(zip(names, pool.map(lambda n: device_details(ctx, n), names)))
        devices = [replace(d, components=found[d.name][0], deployments=found[d.name][1]) if d.name in found else d
                   for d in devices]
    return merge_statuses(devices, statuses) if statuses else devices


def collect_statuses(transport: Any, *, wait: float = 1.0, topic_filter: str = "edge-console/+/status") -> dict:
    """Collect the retained status message of every device from a connected MQTT transport.

    Status messages are published retained, so subscribing delivers the last one of each device at
    once; we listen for `wait` seconds. Malformed payloads are skipped (the console's raw view shows
    them); the newest message per device wins.

    Args:
        transport: a connected `actions.mqtt` Transport.
    """
    from actions.errors import MessageError
    from actions.messages.status import parse_status

    found: dict[str, Any] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        try:
            status = parse_status(payload)
        except MessageError:
            return
        with lock:
            found[status.device] = status

    transport.subscribe(topic_filter, on_message, qos=1)
    time.sleep(wait)
    with lock:
        return dict(found)
