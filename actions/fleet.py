"""The fleet: a thing group's things and Greengrass core devices, side by side with what each
device's edge client last said about itself.

Two independent sources of "last seen" stand side by side, never merged into one number:
- `core_last_seen`: the Greengrass core device status time (the nucleus reporting to AWS);
- `client_last_seen`: the timestamp of the edge client's last status message (MQTT, retained).

    devices = fleet.list_fleet(ctx, "mythinggroupname", statuses=fleet.collect_statuses(transport))

Who a status message is about comes from its topic (`edge-console/<device>/status`), never from the
`device` field inside it: the thing's IoT policy can scope publishing to
`edge-console/${iot:Connection.Thing.ThingName}/*` (the sandbox's thing policy does, see
fixtures/sandbox/device.py), so a device cannot publish on another device's status topic, but
nothing stops it from writing `{"device": "other"}` on its own. A payload whose `device` differs from
the topic's is malformed and ignored (`status_from_message`). The topic is only as good as the
policy: one that allows iot:Publish on any topic vouches for nothing, so check the policy attached
to the devices' certificates.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from actions.aws import aws_call, error_code
from actions.errors import MessageError, NotFound
from actions.messages.status import STATUS_TOPIC_TEMPLATE, Status, parse_status

if TYPE_CHECKING:  # annotations only: the console's fleet model imports this module without boto3
    from actions.context import Context

STATUS_FILTER = "edge-console/+/status"  # every device's status topic (STATUS_TOPIC_TEMPLATE)


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


def status_template(topic_filter: str = STATUS_FILTER) -> str:
    """The status topic template (`{device}` at the device's level) a subscription filter implies.

    A filter with exactly one `+` (and no `#`) has the device at the `+`: `fleet/+/health` gives
    `fleet/{device}/health`. Any other filter (a literal topic, `edge-console/#`) is read with the
    default template, `edge-console/{device}/status`.
    """
    levels = topic_filter.split("/")
    if levels.count("+") == 1 and "#" not in levels:
        return "/".join("{device}" if level == "+" else level for level in levels)
    return STATUS_TOPIC_TEMPLATE


def topic_device(topic: str, topic_filter: str = STATUS_FILTER) -> str | None:
    """The device a status topic names (`edge-console/dev-a/status` -> "dev-a"), None if it names none."""
    template = status_template(topic_filter).split("/")
    levels = topic.split("/")
    if len(levels) != len(template):
        return None
    device = None
    for level, expected in zip(levels, template):
        if expected == "{device}":
            device = level
        elif level != expected:
            return None
    return device or None


def status_from_message(topic: str, payload: bytes | str, topic_filter: str = STATUS_FILTER) -> Status:
    """Parse a status message and check that it is about the device its topic names.

    The device is the topic's (see the module docstring); the payload's `device` must agree.

    Raises:
        MessageError: the payload is not a status message, the topic names no device, or the
            payload claims another device than the topic.
    """
    status = parse_status(payload)
    device = topic_device(topic, topic_filter)
    if device is None:
        raise MessageError(f"the topic {topic!r:.120} does not name a device "
                           f"(expected {status_template(topic_filter)})")
    if status.device != device:
        raise MessageError(f"device {status.device!r:.80} in the payload does not match the topic's {device!r:.80}")
    return status


def collect_statuses(transport: Any, *, wait: float = 1.0, topic_filter: str = STATUS_FILTER,
                     malformed: list[tuple[str, str]] | None = None) -> dict:
    """Collect the retained status message of every device from a connected MQTT transport.

    Status messages are published retained, so subscribing delivers the last one of each device at
    once; we listen for `wait` seconds. Each is keyed by the device its topic names; malformed
    payloads, and payloads claiming another device than their topic, are skipped (the console's raw
    view shows them) and, when `malformed` is given, appended to it as (topic, reason). The newest
    message per device wins.

    Args:
        transport: a connected `actions.mqtt` Transport.
        topic_filter: what to subscribe to; its `+` level is the device (see `status_template`).
        malformed: a list to receive (topic, reason) for every message skipped.
    """
    found: dict[str, Any] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        try:
            status = status_from_message(topic, payload, topic_filter)
        except MessageError as exc:
            if malformed is not None:
                with lock:
                    malformed.append((topic, str(exc)))
            return
        with lock:
            found[status.device] = status

    transport.subscribe(topic_filter, on_message, qos=1)
    time.sleep(wait)
    with lock:
        return dict(found)
