"""Context (sessions, retries, endpoints) and the typed AWS errors."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from actions.aws import aws_call, translate
from actions.context import Context
from actions.errors import AccessDenied, AwsError, ConfigError, NameConflict, NotFound, QuotaExceeded, Throttled

from .conftest import reset


def test_real_aws_context_uses_adaptive_retries(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    ctx = Context.from_aws(region="eu-west-1", state_dir=tmp_path)
    config = ctx.client("s3").meta.config
    assert config.retries["mode"] == "adaptive" and config.region_name == "eu-west-1"
    assert ctx.endpoint_url is None and not ctx.is_sandbox
    assert ctx.client("s3") is ctx.client("s3")  # one client per service


def test_missing_region_or_profile_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="region"):
        Context.from_aws(state_dir=tmp_path)
    with pytest.raises(ConfigError, match="--profile"):
        Context.from_aws(profile="no-such-profile", region="us-east-1", state_dir=tmp_path)


def test_sandbox_context_tries_once_and_reads_a_state_folder(moto_url, tmp_path):
    ctx = Context.for_sandbox(moto_url, state_dir=tmp_path)
    assert ctx.client("iam").meta.config.retries["total_max_attempts"] == 1
    assert ctx.client("iam").meta.endpoint_url == moto_url
    (tmp_path / "sb").mkdir()
    (tmp_path / "sb" / "state.json").write_text(json.dumps({"endpoint_url": moto_url, "region": "eu-west-1"}))
    ctx = Context.for_sandbox(str(tmp_path / "sb"), state_dir=tmp_path)
    assert (ctx.endpoint_url, ctx.region, ctx.sandbox_state_dir) == (moto_url, "eu-west-1", tmp_path / "sb")
    assert ctx.account_id == "123456789012"
    with pytest.raises(ConfigError, match="state.json"):
        Context.for_sandbox(str(tmp_path / "nothing"), state_dir=tmp_path)


def test_register_reaches_clients_made_before_and_after(moto_url, tmp_path):
    reset(moto_url)
    ctx = Context.for_sandbox(moto_url, state_dir=tmp_path)
    seen = []
    ctx.client("s3").list_buckets()
    ctx.register("before-call.*.*", lambda model, **kw: seen.append(model.name))
    ctx.client("s3").list_buckets()
    ctx.client("iam").list_roles()
    assert seen == ["ListBuckets", "ListRoles"]


def test_real_failures_become_typed_errors(moto_url, tmp_path):
    reset(moto_url)
    ctx = Context.for_sandbox(moto_url, state_dir=tmp_path)
    iam = ctx.client("iam")
    with pytest.raises(NotFound, match="create it first"):
        with aws_call("read the role nobody"):
            iam.get_role(RoleName="nobody")
    iam.create_role(RoleName="twice", AssumeRolePolicyDocument="{}")
    with pytest.raises(NameConflict, match="choose another name"):
        with aws_call("create the role twice"):
            iam.create_role(RoleName="twice", AssumeRolePolicyDocument="{}")


def _client_error(code: str) -> ClientError:
    # A mock: throttling, quota and permission failures cannot be produced by the local server
    # (moto does not throttle, has no quotas, and allows every call), so we build the error
    # botocore would raise from the real answer.
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "RunInstances")


@pytest.mark.parametrize("code, kind, hint", [
    ("ThrottlingException", Throttled, "wait a minute"),
    ("RequestLimitExceeded", Throttled, "wait a minute"),
    ("VcpuLimitExceeded", QuotaExceeded, "Service Quotas"),
    ("LimitExceededException", QuotaExceeded, "Service Quotas"),
    ("UnauthorizedOperation", AccessDenied, "grant that permission"),
    ("AccessDeniedException", AccessDenied, "grant that permission"),
    ("InvalidInstanceID.NotFound", NotFound, "check the name"),
    ("ValidationException", AwsError, "ValidationException"),
])
def test_each_failure_kind_has_its_sentence(code, kind, hint):
    err = translate(_client_error(code), "launch the edge server")
    assert type(err) is kind
    assert str(err).startswith("Could not launch the edge server") and hint in str(err)
    assert "\n" not in str(err)


def test_missing_credentials_say_what_to_do():
    from botocore.exceptions import NoCredentialsError

    err = translate(NoCredentialsError(), "read the account ID")
    assert isinstance(err, AccessDenied) and "aws configure" in str(err)


def test_aws_region_alone_sets_the_region(monkeypatch):
    """boto3 reads only AWS_DEFAULT_REGION; operators coming from the AWS CLI v2 set AWS_REGION."""
    from actions.context import Context

    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Context.from_aws(None, None).region == "eu-west-1"
