"""Fetch and follow a Greengrass component's log on a device.

- Sandbox: the device's own files, `<sandbox state>/devices/<device>/logs/<component>.log`.
- AWS: SSM Run Command (`AWS-RunShellScript`) on the edge server, which the role's
  AmazonSSMManagedInstanceCore allows; it reads `/greengrass/v2/logs/<component>.log` (our start
  script mounts the nucleus root from the host, so the logs are on the host).

    for line in logs.follow(ctx, "mything", "com.greengrass.SageMakerEdgeManager.ImageClassification"):
        ...   # like the runbook's `sudo tail -f /greengrass/v2/logs/<component>.log`
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Iterator

from actions.aws import aws_call
from actions.context import Context
from actions.errors import AwsError, ConfigError, NotFound

SAFE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
GG_LOGS = "/greengrass/v2/logs"
# Run Command returns at most 24,000 characters of output; ask for less than that per read.
SSM_CHUNK = 20000
SIZE_MARK = "@@edge-console-size="


def _check(device: str, component: str) -> None:
    for what, value in (("device", device), ("component", component)):
        if not SAFE_NAME.match(value):
            raise ConfigError(f"{what} {value!r} is not a valid name (letters, digits, '.', '_', ':', '-').")


def log_file(ctx: Context, device: str, component: str) -> Path:
    """The log file of `component` on a sandbox device (`greengrass` for the nucleus's own log).

    Raises:
        ConfigError: the context does not know the sandbox's state folder.
        NotFound: no such device, or the component has not logged anything yet.
    """
    _check(device, component)
    if ctx.sandbox_state_dir is None:
        raise ConfigError("The sandbox's state folder is unknown; pass --sandbox with the state folder "
                          "(it holds state.json) instead of the URL.")
    root = Path(ctx.sandbox_state_dir) / "devices" / device
    if not root.is_dir():
        raise NotFound(f"The sandbox has no device {device}; add it with `edge-console sandbox device add`.")
    path = root / "logs" / f"{component}.log"
    if not path.is_file():
        raise NotFound(f"{component} has not written a log on {device} yet; deploy it first or check the name.")
    return path


def _tail_lines(data: bytes, lines: int) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    out = text.splitlines()
    return out[-lines:] if lines > 0 else out


def _use_files(ctx: Context, via: str) -> bool:
    if via not in ("auto", "files", "ssm"):
        raise ConfigError(f"via {via!r} must be auto, files or ssm.")
    return via == "files" or (via == "auto" and ctx.is_sandbox)


def fetch(ctx: Context, device: str, component: str, *, lines: int = 100, instance_id: str | None = None,
          via: str = "auto") -> list[str]:
    """The last `lines` lines of a component's log on a device.

    Args:
        device: the core device (thing) name.
        component: the component name, or "greengrass" for the nucleus's log.
        instance_id: AWS only: the EC2 instance to ask (default: the stack's edge server).
        via: "files" (sandbox device folders), "ssm" (Run Command), or "auto" (files in the sandbox).
    """
    if _use_files(ctx, via):
        path = log_file(ctx, device, component)
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 256 * 1024))  # the tail is enough for `lines` lines
            return _tail_lines(f.read(), lines)
    _check(device, component)
    command = f"tail -n {int(lines)} {GG_LOGS}/{component}.log"
    return run_command(ctx, instance_id or edge_server(ctx), command).splitlines()


def follow(ctx: Context, device: str, component: str, *, lines: int = 20, poll: float | None = None,
           stop: threading.Event | None = None, instance_id: str | None = None, via: str = "auto") -> Iterator[str]:
    """Yield the last `lines` lines, then every new line as it is written, until `stop` is set.

    A log that is rotated or truncated is read again from its start.
    """
    stop = stop or threading.Event()
    if _use_files(ctx, via):
        path = log_file(ctx, device, component)
        poll = 0.2 if poll is None else poll
        yield from fetch(ctx, device, component, lines=lines)
        offset, partial = path.stat().st_size, b""
        while not stop.is_set():
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # rotated or truncated
                offset, partial = 0, b""
            if size > offset:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset)
                offset += len(chunk)
                *complete, partial = (partial + chunk).split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", errors="replace")
            stop.wait(poll)
        return
    _check(device, component)
    instance = instance_id or edge_server(ctx)
    poll = 5.0 if poll is None else poll
    path = f"{GG_LOGS}/{component}.log"
    yield from fetch(ctx, device, component, lines=lines, instance_id=instance, via="ssm")
    offset = _remote_size(ctx, instance, path)
    while not stop.wait(poll):
        out = run_command(ctx, instance, f'f={path}; s=$(stat -c %s "$f" 2>/dev/null || echo 0); '
                                         f'echo "{SIZE_MARK}$s"; '
                                         f'if [ "$s" -ge {offset} ]; then tail -c +{offset + 1} "$f" | head -c {SSM_CHUNK}; '
                                         f'else head -c {SSM_CHUNK} "$f"; fi')
        head, _, body = out.partition("\n")
        size = int(head.removeprefix(SIZE_MARK) or 0) if head.startswith(SIZE_MARK) else offset
        if size < offset:
            offset = 0
        raw = body.encode()
        keep = raw[: raw.rfind(b"\n") + 1] if b"\n" in raw else b""
        offset += len(keep)
        for line in keep.decode("utf-8", errors="replace").splitlines():
            yield line


def _remote_size(ctx: Context, instance: str, path: str) -> int:
    out = run_command(ctx, instance, f'stat -c %s "{path}" 2>/dev/null || echo 0').strip()
    return int(out) if out.isdigit() else 0


def edge_server(ctx: Context, name: str = "edge-server") -> str:
    """The instance ID of the stack's running edge server.

    Raises:
        NotFound: the stack has no running edge server.
    """
    key, value = ctx.tag
    with aws_call("find the edge server"):
        reservations = ctx.client("ec2").describe_instances(Filters=[
            {"Name": f"tag:{key}", "Values": [value]}, {"Name": "tag:Name", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
    ids = [i["InstanceId"] for r in reservations for i in r["Instances"]]
    if not ids:
        raise NotFound(f"Stack {ctx.stack} has no running {name}; run `edge-console setup apply` or pass --instance.")
    return ids[0]


def run_command(ctx: Context, instance_id: str, command: str, *, timeout: float = 60.0) -> str:
    """Run one shell command on an instance with SSM Run Command; return its standard output.

    Raises:
        AwsError: the command failed or did not finish in `timeout` seconds (the message says
            whether the SSM agent is reachable).
    """
    ssm = ctx.client("ssm")
    with aws_call(f"run a command on {instance_id} through SSM"):
        command_id = ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunShellScript",
                                      Comment="edge-console logs", TimeoutSeconds=max(30, int(timeout)),
                                      Parameters={"commands": [command]})["Command"]["CommandId"]
    deadline = time.monotonic() + timeout
    while True:
        with aws_call(f"read the SSM command {command_id}"):
            try:
                inv = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            except Exception as exc:
                # The invocation is not visible for a moment after SendCommand.
                if "InvocationDoesNotExist" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise
        status = inv.get("Status")
        if status == "Success":
            return inv.get("StandardOutputContent", "")
        if status in ("Failed", "Cancelled", "TimedOut", "Undeliverable", "Terminated"):
            raise AwsError(f"The command on {instance_id} ended {status}: "
                           f"{(inv.get('StandardErrorContent') or '').strip()[:300]} Check that the SSM agent "
                           "runs there and the role has AmazonSSMManagedInstanceCore.")
        if time.monotonic() > deadline:
            raise AwsError(f"The command on {instance_id} did not finish in {int(timeout)} s (status {status}); "
                           "check that the instance is online in Systems Manager > Fleet Manager.")
        time.sleep(0.5 if ctx.is_sandbox else 1.0)
