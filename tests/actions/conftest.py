"""Fixtures for the actions tests: a real AWS-speaking server and a Context on it.

IAM/S3/EC2/SSM/IoT tests run against a plain moto server started here (reset before each test,
so every test starts from an empty account). Greengrass and SageMaker tests use the sandbox
fixture (tests/plugins/sandbox.py), which adds what moto lacks.
"""

from __future__ import annotations

import os
import urllib.request
import uuid

import pytest

from actions.context import Context


@pytest.fixture(scope="session")
def moto_url():
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def reset(url: str) -> None:
    """Empty every moto backend (moto's own reset endpoint)."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).read()


@pytest.fixture
def ctx(moto_url, tmp_path):
    """A Context on a freshly reset moto server, us-east-1, its own stack and state directory."""
    reset(moto_url)
    return Context.for_sandbox(moto_url, region="us-east-1", stack=f"t{uuid.uuid4().hex[:8]}",
                               state_dir=tmp_path / "state")


@pytest.fixture
def calls():
    """A recorder for botocore calls: `calls.attach(ctx)`, then `calls.names` / `calls.mutating()`."""

    class Recorder:
        def __init__(self):
            self.names: list[str] = []

        def attach(self, context: Context) -> None:
            context.register("before-call.*.*", lambda model, **kw: self.names.append(model.name))

        def mutating(self) -> list[str]:
            read = ("Get", "List", "Describe", "Head")
            return [n for n in self.names if not n.startswith(read)]

        def clear(self) -> None:
            self.names.clear()

    return Recorder()
