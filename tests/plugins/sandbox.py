"""Pytest fixtures for the local AWS sandbox (fixtures/sandbox).

- `sandbox`: one sandbox for the whole session (server on a free port, MQTT broker, state under pytest's
  tmp folder). Share it: give your buckets, things, groups and components unique names, and do not
  reset it. Core devices turn UNHEALTHY 5 s after their last report.
- `sandbox_session`: a boto3 Session on it (test credentials, one attempt per call).

    def test_bucket(sandbox):
        s3 = sandbox.client("s3")
        ...
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """The session's sandbox: endpoint_url, region, account_id, broker, client(), add_device()."""
    from fixtures.sandbox import Sandbox

    sb = Sandbox.start(tmp_path_factory.mktemp("sandbox"), port=0, broker=True, unhealthy_after=5.0)
    yield sb
    sb.stop()


@pytest.fixture
def sandbox_session(sandbox):
    """A boto3 Session whose clients talk to the session's sandbox."""
    return sandbox.session()
