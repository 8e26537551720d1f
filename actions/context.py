"""The one place that makes boto3 sessions and clients.

Every action takes a `Context` as its first argument; no module builds its own session. Against
real AWS the clients retry in botocore's adaptive mode; against the sandbox they try once, because
the sandbox answers unimplemented calls with HTTP 500, which botocore would otherwise retry for
seconds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from actions.aws import translate

DEFAULT_STACK = "edge-console"
DEFAULT_REGION = "us-east-1"
# Any credentials do for the sandbox; they never leave this machine.
SANDBOX_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def default_state_dir() -> Path:
    """Where local state (env files, generated recipes, archives) lives: $EDGE_CONSOLE_STATE or ~/.edge-console."""
    return Path(os.environ.get("EDGE_CONSOLE_STATE", Path.home() / ".edge-console"))


@dataclass
class Context:
    """What every action needs to talk to one AWS account (or the sandbox).

    Attributes:
        session: the boto3 session; register botocore event handlers on `session.events`.
        region: the AWS region of every client.
        endpoint_url: the sandbox's URL, or None for real AWS.
        stack: the stack name; every resource is tagged `edge-console:stack=<stack>`.
        state_dir: the local state directory (per-stack files go in `stack_dir`).
        retries: botocore's retry settings for every client.
        sandbox_state_dir: the sandbox's state folder (its devices' roots live under
            `devices/<name>/`), when known; logs read device log files from there.
    """

    session: boto3.Session
    region: str
    endpoint_url: str | None = None
    stack: str = DEFAULT_STACK
    state_dir: Path = field(default_factory=default_state_dir)
    retries: dict[str, Any] = field(default_factory=lambda: {"mode": "adaptive", "max_attempts": 10})
    sandbox_state_dir: Path | None = None
    _account_id: str | None = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_sandbox(cls, endpoint_url: str, region: str = DEFAULT_REGION, *, stack: str = DEFAULT_STACK,
                    state_dir: Path | None = None, sandbox_state_dir: Path | None = None) -> Context:
        """A context for the local sandbox at `endpoint_url` (one attempt per call, dummy keys).

        `endpoint_url` may also be the sandbox's state folder (holding `state.json`), which gives
        the URL, the region and where its devices' logs are.
        """
        import json

        target = Path(endpoint_url)
        if not endpoint_url.startswith(("http://", "https://")):
            from actions.errors import ConfigError

            try:
                found = [p for p in (target / "state.json", target / "server.json") if p.is_file()]
                doc = json.loads(found[0].read_text())
            except (OSError, ValueError, IndexError):
                raise ConfigError(f"--sandbox {endpoint_url!r} is neither an http:// URL nor a sandbox state "
                                  "folder with state.json; start one with `edge-console sandbox up`.") from None
            endpoint_url, region = doc["endpoint_url"], doc.get("region") or region
            sandbox_state_dir = sandbox_state_dir or target
        session = boto3.Session(region_name=region, **SANDBOX_KEYS)
        return cls(session=session, region=region, endpoint_url=endpoint_url.rstrip("/"), stack=stack,
                   state_dir=Path(state_dir) if state_dir else default_state_dir(),
                   retries={"total_max_attempts": 1, "mode": "standard"},  # one attempt: see module doc
                   sandbox_state_dir=Path(sandbox_state_dir) if sandbox_state_dir else None)

    @classmethod
    def from_aws(cls, profile: str | None = None, region: str | None = None, *, stack: str = DEFAULT_STACK,
                 state_dir: Path | None = None) -> Context:
        """A context for real AWS from a named profile (or the default chain) and a region.

        Raises:
            ConfigError: no region is given and none is configured.
        """
        from actions.errors import ConfigError

        try:
            # boto3 reads AWS_DEFAULT_REGION only; the AWS CLI v2 and the other SDKs also honour AWS_REGION.
            session = boto3.Session(profile_name=profile, region_name=region or os.environ.get("AWS_REGION") or None)
        except Exception as exc:  # botocore's ProfileNotFound and friends
            raise ConfigError(f"AWS profile {profile!r} cannot be used ({exc}); check ~/.aws/config "
                              "or pass another --profile.") from None
        if not session.region_name:
            raise ConfigError("No AWS region is set; pass --region or set AWS_REGION (or AWS_DEFAULT_REGION).")
        return cls(session=session, region=session.region_name, stack=stack,
                   state_dir=Path(state_dir) if state_dir else default_state_dir())

    @property
    def is_sandbox(self) -> bool:
        """True when the clients talk to the local sandbox."""
        return self.endpoint_url is not None

    @property
    def stack_dir(self) -> Path:
        """This stack's local state directory (created on first use, 0700)."""
        path = Path(self.state_dir) / self.stack
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @property
    def partition(self) -> str:
        """The ARN partition of the region ("aws", "aws-cn", "aws-us-gov"); "aws" in the sandbox."""
        if self.is_sandbox:
            return "aws"
        return self.session.get_partition_for_region(self.region) or "aws"

    @property
    def tag(self) -> tuple[str, str]:
        """The (key, value) of the stack tag every resource carries."""
        return ("edge-console:stack", self.stack)

    def client(self, service: str) -> Any:
        """A cached botocore client for `service` with this context's region, endpoint and retries."""
        with self._lock:
            if service not in self._clients:
                config = Config(retries=dict(self.retries), user_agent_extra="edge-console",
                                s3={"addressing_style": "path"} if self.is_sandbox else None)
                self._clients[service] = self.session.client(
                    service, region_name=self.region, endpoint_url=self.endpoint_url, config=config)
            return self._clients[service]

    def register(self, event_name: str, handler: Any) -> None:
        """Register a botocore event handler (e.g. "before-call.*.*") on the session and on every
        client made so far (botocore copies the session's handlers into a client when it is made).
        """
        with self._lock:
            self.session.events.register(event_name, handler)
            for client in self._clients.values():
                client.meta.events.register(event_name, handler)

    @property
    def account_id(self) -> str:
        """The account ID, from STS once and then cached."""
        if self._account_id is None:
            try:
                self._account_id = self.client("sts").get_caller_identity()["Account"]
            except Exception as exc:
                raise translate(exc, "read the account ID") from None
        return self._account_id

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        """An ARN in this account (`region=False` for global services such as IAM)."""
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account_id}:{resource}"
