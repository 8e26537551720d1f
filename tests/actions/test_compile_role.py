"""Which role a compilation job runs as: the stack's compilation role, found without guessing.

Against a real moto server (IAM, S3); the jobs themselves run in test_pipeline.py.
"""

from __future__ import annotations

import json

import pytest

from actions import compile as comp
from actions import setup
from actions.errors import ConfigError, NotFound
from actions.setup import SetupConfig, policies

NEO_ROLE = "SageMakerGreenGrassV2MinimalResourceRole-NeoCompilation"
EDGE_ROLE = "SageMakerGreenGrassV2MinimalResourceRole"


def test_the_stacks_compilation_role_comes_from_setup_json(ctx, calls):
    list(setup.apply(ctx))
    expected = f"arn:aws:iam::{ctx.account_id}:role/{NEO_ROLE}"
    calls.attach(ctx)
    assert comp.compile_role_arn(ctx) == expected
    assert calls.names == []  # read from <stack dir>/setup.json, no call
    # A role given by name or ARN wins.
    assert comp.compile_role_arn(ctx, "MyNeoRole") == f"arn:aws:iam::{ctx.account_id}:role/MyNeoRole"
    assert comp.compile_role_arn(ctx, "arn:aws:iam::111122223333:role/x") == "arn:aws:iam::111122223333:role/x"


def test_without_setup_json_iam_is_asked_for_a_role_of_ours_that_trusts_sagemaker(ctx):
    list(setup.apply(ctx))
    (ctx.stack_dir / "setup.json").unlink()  # e.g. setup ran on another machine
    assert comp.compile_role_arn(ctx) == f"arn:aws:iam::{ctx.account_id}:role/{NEO_ROLE}"
    # The edge server's role is ours too, but no longer trusted by SageMaker: never picked.
    iam = ctx.client("iam")
    for name in iam.list_role_policies(RoleName=NEO_ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=NEO_ROLE, PolicyName=name)
    iam.delete_role(RoleName=NEO_ROLE)
    with pytest.raises(NotFound, match=f"Stack {ctx.stack} has no compilation role"):
        comp.compile_role_arn(ctx)


def test_the_runbook_preset_compiles_as_the_edge_servers_role(ctx):
    runbook = SetupConfig(preset="runbook")
    list(setup.apply(ctx, runbook))
    edge = f"arn:aws:iam::{ctx.account_id}:role/{EDGE_ROLE}"
    assert comp.compile_role_arn(ctx) == edge
    (ctx.stack_dir / "setup.json").unlink()
    assert comp.compile_role_arn(ctx) == edge  # found in IAM: ours, and trusted by SageMaker


def test_someone_elses_role_is_never_picked(ctx):
    ctx.client("iam").create_role(RoleName=NEO_ROLE, AssumeRolePolicyDocument=json.dumps(
        policies.compile_trust_policy(policies.Scope("aws", "us-east-1", ctx.account_id, "b", "t", "g", "r", "a",
                                                     "c"))))
    with pytest.raises(NotFound, match="setup apply"):
        comp.compile_role_arn(ctx)


def test_no_role_fails_before_the_upload(ctx, tmp_path, calls):
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"never uploaded")
    calls.attach(ctx)
    with pytest.raises(NotFound) as err:
        list(comp.compile_with_neo(ctx, comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]},
                                                    model_tar=model, bucket="some-bucket")))
    assert calls.mutating() == []
    message = str(err.value)
    assert "\n" not in message and f"edge-console setup apply --stack {ctx.stack}" in message
    assert "--role-name" in message


@pytest.mark.parametrize("role", ["has space", "arn:aws:iam::12:role/x", "x" * 65])
def test_a_malformed_role_is_refused_before_any_call(tmp_path, role):
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"x")
    with pytest.raises(ConfigError, match="role_name"):
        comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=model, role_name=role).validate()
