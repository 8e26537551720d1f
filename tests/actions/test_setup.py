"""Setup plan against a real moto server: plan, apply, idempotency, resume, destroy."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from actions import setup
from actions.context import Context
from actions.errors import ConfigError, NameConflict
from actions.progress import DONE, FAILED, SKIPPED
from actions.setup import SetupConfig, policies
from actions.setup.config import ENV_KEYS, parse_env, render_env

from .conftest import reset


def run(events):
    return list(events)


EDGE_ROLE = "SageMakerGreenGrassV2MinimalResourceRole"
NEO_ROLE = "SageMakerGreenGrassV2MinimalResourceRole-NeoCompilation"


def test_plan_shows_every_resource_and_the_documents(ctx):
    changes = {c.step: c for c in setup.plan(ctx)}
    assert list(changes) == ["compile-role", "iam-role", "instance-profile", "tes-role", "role-alias", "thing-group",
                             "bucket", "scripts", "instance", "published"]
    assert all(c.action == setup.CREATE for c in changes.values() if c.step != "published")
    assert changes["published"].action == setup.NONE  # compile, package and deploy make those
    role = changes["iam-role"]
    trust = role.documents["trust policy"]
    services = {s["Principal"]["Service"] for s in trust["Statement"]}
    assert services == {"ec2.amazonaws.com"}  # Neo and the token exchange have roles of their own
    assert "inline GreengrassComponentAccessPolicy" in role.documents
    assert "inline EdgeConsoleCompilationAccess" not in role.documents
    assert any(f"Neo compiles as {NEO_ROLE}" in d for d in role.details)
    neo = changes["compile-role"]
    assert neo.summary == f"create role {NEO_ROLE}"
    (statement,) = neo.documents["trust policy"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ctx.account_id}
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:sagemaker:us-east-1:{ctx.account_id}:compilation-job/*"}
    assert list(neo.documents) == ["trust policy", "inline EdgeConsoleCompilationAccess", "managed policies"]
    assert neo.documents["managed policies"] == []
    assert policies.lint(neo.documents["inline EdgeConsoleCompilationAccess"]) == []
    assert any("AmazonSageMakerEdgeDeviceFleetPolicy" in d and "2024-04-26" in d for d in role.details)
    bucket = f"ec2-scripts-us-east-1-{ctx.account_id}"
    assert changes["bucket"].summary == f"create bucket {bucket}"
    instance = "\n".join(changes["instance"].details)
    assert "0.085" in instance and "al2023" in instance and "20 GiB" in instance
    ami = ctx.client("ssm").get_parameter(Name=SetupConfig().ami_parameter)["Parameter"]["Value"]
    assert f"AMI: {ami}" in instance
    # Every inline document the default preset would apply passes the IAM linter.
    for name, doc in role.documents.items():
        if name.startswith("inline "):
            assert policies.lint(doc) == [], name
    assert role.documents["managed policies"] == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    env = "\n".join(changes["scripts"].details)
    assert "THING_NAME=mything" in env and "AWS_REGION=us-east-1" in env


def test_apply_creates_what_the_runbook_describes(ctx):
    events = run(setup.apply(ctx))
    assert events[-1].percent == 100.0 and not [e for e in events if e.state == FAILED]
    assert {e.step for e in events if e.state == DONE} == {"compile-role", "iam-role", "instance-profile", "tes-role",
                                                           "role-alias", "thing-group", "bucket", "scripts", "instance"}
    iam, s3, ec2 = ctx.client("iam"), ctx.client("s3"), ctx.client("ec2")
    role = iam.get_role(RoleName=EDGE_ROLE)["Role"]
    assert policies.normalize(role["AssumeRolePolicyDocument"]) == policies.normalize(policies.EDGE_TRUST_POLICY)
    assert {"Key": "edge-console:stack", "Value": ctx.stack} in role["Tags"]
    inline = set(iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"])
    assert inline == {"EdgeConsoleScriptsAccess", "EdgeConsoleCompiledModelsRead", "EdgeConsoleGreengrassProvisioning",
                      "GreengrassComponentAccessPolicy"}
    # The compilation role: SageMaker only, for our account's compilation jobs; reads models/, writes compiled/.
    neo = iam.get_role(RoleName=NEO_ROLE)["Role"]
    assert {"Key": "edge-console:stack", "Value": ctx.stack} in neo["Tags"]
    (statement,) = neo["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == \
        f"arn:aws:sagemaker:us-east-1:{ctx.account_id}:compilation-job/*"
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ctx.account_id
    assert iam.list_role_policies(RoleName=NEO_ROLE)["PolicyNames"] == ["EdgeConsoleCompilationAccess"]
    assert iam.list_attached_role_policies(RoleName=NEO_ROLE)["AttachedPolicies"] == []
    assert iam.list_instance_profiles_for_role(RoleName=NEO_ROLE)["InstanceProfiles"] == []
    written = iam.get_role_policy(RoleName=NEO_ROLE, PolicyName="EdgeConsoleCompilationAccess")["PolicyDocument"]
    bucket_arn = f"arn:aws:s3:::ec2-scripts-us-east-1-{ctx.account_id}"
    assert {"Sid": "WriteCompiledModels", "Effect": "Allow", "Action": ["s3:PutObject"],
            "Resource": f"{bucket_arn}/compiled/*"} in written["Statement"]
    # The edge server reads compiled models and writes none.
    edge_docs = [iam.get_role_policy(RoleName=EDGE_ROLE, PolicyName=n)["PolicyDocument"] for n in inline]
    assert "s3:PutObject" not in json.dumps(edge_docs) and f"{bucket_arn}/compiled/*" in json.dumps(edge_docs)
    profile = iam.get_instance_profile(InstanceProfileName=role["RoleName"])["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [role["RoleName"]]

    bucket = f"ec2-scripts-us-east-1-{ctx.account_id}"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    env = parse_env(s3.get_object(Bucket=bucket, Key="scripts/env")["Body"].read().decode())
    assert list(env) == list(ENV_KEYS) and env["AWS_REGION"] == "us-east-1"
    assert env["THING_GROUP_NAME"] == "mythinggroupname"
    assert "docker" in s3.get_object(Bucket=bucket, Key="scripts/install-greengrass.sh")["Body"].read().decode()
    local_env = ctx.stack_dir / "env"
    assert parse_env(local_env.read_text()) == env

    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["edge-server"]}])["Reservations"]
    (instance,) = [i for r in reservations for i in r["Instances"]]
    assert instance["InstanceType"] == "c5.large" and instance["State"]["Name"] == "running"
    ami = ctx.client("ssm").get_parameter(Name=SetupConfig().ami_parameter)["Parameter"]["Value"]
    assert instance["ImageId"] == ami
    assert instance["IamInstanceProfile"]["Arn"].endswith("/SageMakerGreenGrassV2MinimalResourceRole")
    assert instance["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 only
    assert "KeyName" not in instance  # no SSH key: Session Manager instead
    volume = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}])
    assert volume["Volumes"][0]["Size"] == 20
    user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert f"s3://{bucket}/scripts/" in script
    shown = [e for e in events if e.step == "instance" and e.data and e.data.get("state") == "running"]
    assert shown and shown[-1].data["instance_id"] == instance["InstanceId"]

    saved = json.loads((ctx.stack_dir / "setup.json").read_text())
    assert saved["outputs"]["instances"][0]["instance_id"] == instance["InstanceId"]
    assert saved["outputs"]["compile_role_arn"] == neo["Arn"]
    assert saved["outputs"]["role_arn"] == role["Arn"]
    assert stat.S_IMODE((ctx.stack_dir / "setup.json").stat().st_mode) == 0o600


def test_second_apply_makes_no_mutating_call(ctx, calls):
    calls.attach(ctx)
    run(setup.apply(ctx))
    first = calls.mutating()
    assert {"CreateRole", "CreateBucket", "RunInstances", "PutObject"} <= set(first)
    assert first.count("CreateRole") == 3  # compilation, edge server and token exchange roles
    calls.clear()
    events = run(setup.apply(ctx))
    assert calls.names, "the second apply should still read"
    assert calls.mutating() == []
    assert {e.state for e in events} == {SKIPPED}
    assert all(c.action == setup.NONE for c in setup.plan(ctx))


def test_changed_setting_is_an_update(ctx, calls):
    run(setup.apply(ctx))
    cfg = SetupConfig(thing_name="otherthing")
    changes = {c.step: c for c in setup.plan(ctx, cfg)}
    assert changes["scripts"].action == setup.UPDATE and "env" in changes["scripts"].summary
    assert changes["iam-role"].action == setup.UPDATE  # the scoped policy names the thing
    calls.attach(ctx)
    run(setup.apply(ctx, cfg))
    assert set(calls.mutating()) == {"PutObject", "PutRolePolicy"}


def test_bucket_outside_us_east_1(moto_url, tmp_path):
    reset(moto_url)
    ctx = Context.for_sandbox(moto_url, region="eu-west-1", stack="eu", state_dir=tmp_path)
    run(setup.apply(ctx))
    bucket = f"ec2-scripts-eu-west-1-{ctx.account_id}"
    assert ctx.client("s3").get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    env = parse_env((ctx.stack_dir / "env").read_text())
    assert env["AWS_REGION"] == "eu-west-1"


def test_runbook_preset_attaches_the_chapters_managed_policies(ctx):
    runbook = SetupConfig(preset="runbook")
    changes = {c.step: c for c in setup.plan(ctx, runbook)}
    # One role, as the chapter has it; the plan says why and what it risks, on both steps.
    assert changes["compile-role"].action == setup.NONE
    for step in ("compile-role", "iam-role"):
        assert policies.SINGLE_ROLE in changes[step].details
    assert "Risk:" in policies.SINGLE_ROLE and "compiled/*" in policies.SINGLE_ROLE
    run(setup.apply(ctx, runbook))
    iam = ctx.client("iam")
    attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=EDGE_ROLE)["AttachedPolicies"]}
    assert attached == {"AmazonSageMakerFullAccess", "AWSIoTLogging", "AmazonS3FullAccess", "AWSIoTRuleActions",
                        "AWSIoTThingsRegistration", "AmazonSSMManagedInstanceCore"}
    doc = iam.get_role_policy(RoleName=EDGE_ROLE, PolicyName="GreengrassComponentAccessPolicy")["PolicyDocument"]
    assert policies.normalize(doc) == policies.normalize(policies.RUNBOOK_COMPONENT_ACCESS)
    role = iam.get_role(RoleName=EDGE_ROLE)["Role"]
    assert policies.normalize(role["AssumeRolePolicyDocument"]) == policies.normalize(policies.TRUST_POLICY)
    assert NEO_ROLE not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert setup.outputs(ctx, runbook)["compile_role_arn"] == role["Arn"]
    # Switching presets converges: the managed policies go, the scoped ones come, and SageMaker
    # moves from the edge server's role to a compilation role of its own.
    run(setup.apply(ctx, SetupConfig()))
    attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=EDGE_ROLE)["AttachedPolicies"]}
    assert attached == {"AmazonSSMManagedInstanceCore"}
    trust = iam.get_role(RoleName=EDGE_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert "sagemaker.amazonaws.com" not in json.dumps(trust)
    assert iam.get_role(RoleName=NEO_ROLE)["Role"]["Arn"] == setup.outputs(ctx)["compile_role_arn"]
    # And back: the runbook's apply removes the compilation role it no longer uses.
    changes = {c.step: c for c in setup.plan(ctx, runbook)}
    assert changes["compile-role"].action == setup.DELETE
    run(setup.apply(ctx, runbook))
    assert NEO_ROLE not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert all(c.action == setup.NONE for c in setup.plan(ctx, runbook))


def test_a_single_role_stack_is_split_on_the_next_apply(ctx, calls):
    """A stack made before the split: the edge server's role trusted by SageMaker, writing compiled/."""
    run(setup.apply(ctx))
    iam = ctx.client("iam")
    for name in iam.list_role_policies(RoleName=NEO_ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=NEO_ROLE, PolicyName=name)
    iam.delete_role(RoleName=NEO_ROLE)
    old = {"Version": "2012-10-17", "Statement": [
        {"Sid": "WriteCompiledModels", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": f"arn:aws:s3:::ec2-scripts-us-east-1-{ctx.account_id}/compiled/*"}]}
    iam.put_role_policy(RoleName=EDGE_ROLE, PolicyName="EdgeConsoleCompilationAccess", PolicyDocument=json.dumps(old))
    iam.update_assume_role_policy(RoleName=EDGE_ROLE, PolicyDocument=json.dumps(policies.TRUST_POLICY))

    changes = {c.step: c for c in setup.plan(ctx)}
    assert changes["compile-role"].action == setup.CREATE
    assert changes["iam-role"].action == setup.UPDATE
    assert {"update trust policy", "delete inline policy EdgeConsoleCompilationAccess"} <= set(changes["iam-role"].details)
    calls.attach(ctx)
    run(setup.apply(ctx))
    assert calls.mutating() == ["CreateRole", "PutRolePolicy", "UpdateAssumeRolePolicy", "DeleteRolePolicy"]
    assert "sagemaker.amazonaws.com" not in json.dumps(iam.get_role(RoleName=EDGE_ROLE)["Role"]["AssumeRolePolicyDocument"])
    assert "EdgeConsoleCompilationAccess" not in iam.list_role_policies(RoleName=EDGE_ROLE)["PolicyNames"]
    assert all(c.action == setup.NONE for c in setup.plan(ctx))


def test_apply_resumes_after_a_failure(ctx, calls):
    # A real failure: someone else's bucket holds our bucket's name.
    bucket = f"ec2-scripts-us-east-1-{ctx.account_id}"
    ctx.client("s3").create_bucket(Bucket=bucket)
    events = []
    with pytest.raises(NameConflict, match="--bucket"):
        for event in setup.apply(ctx):
            events.append(event)
    assert events[-1].state == FAILED and events[-1].step == "bucket"
    done_before = {e.step for e in events if e.state == DONE}
    assert {"iam-role", "instance-profile", "thing-group"} <= done_before
    ctx.client("s3").delete_bucket(Bucket=bucket)
    calls.attach(ctx)
    events = run(setup.apply(ctx))
    skipped = {e.step for e in events if e.state == SKIPPED}
    assert done_before <= skipped
    assert "CreateRole" not in calls.mutating() and "CreateBucket" in calls.mutating()
    assert events[-1].percent == 100.0 and [e for e in events if e.state == DONE][-1].step == "instance"


def test_destroy_removes_ours_in_order_and_nothing_else(ctx):
    ec2, s3, iam = ctx.client("ec2"), ctx.client("s3"), ctx.client("iam")
    # Someone else's edge-server and bucket, in the same account.
    ami = ctx.client("ssm").get_parameter(Name=SetupConfig().ami_parameter)["Parameter"]["Value"]
    theirs = ec2.run_instances(ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "edge-server"}]}])["Instances"][0]["InstanceId"]
    s3.create_bucket(Bucket="someone-elses-bucket")
    iam.create_role(RoleName="SomeoneElsesRole", AssumeRolePolicyDocument=json.dumps(policies.TES_TRUST_POLICY))
    run(setup.apply(ctx))
    s3.put_object(Bucket=f"ec2-scripts-us-east-1-{ctx.account_id}", Key="artifacts/x/1.0.0/a.zip", Body=b"x")

    planned = [c.step for c in setup.destroy_plan(ctx) if c.action == setup.DELETE]
    assert planned == ["instance", "bucket", "thing-group", "role-alias", "tes-role", "instance-profile", "iam-role",
                       "compile-role"]
    events = run(setup.destroy(ctx))
    order = [e.step for e in events if e.state == DONE]
    assert order == planned
    assert all(c.action == setup.CREATE for c in setup.plan(ctx) if c.step != "published")
    state = ec2.describe_instances(InstanceIds=[theirs])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
    assert "someone-elses-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert iam.get_role(RoleName="SomeoneElsesRole")["Role"]["RoleName"] == "SomeoneElsesRole"
    assert {r["RoleName"] for r in iam.list_roles()["Roles"]} == {"SomeoneElsesRole"}
    assert not (ctx.stack_dir / "setup.json").exists()


def test_a_role_that_is_not_ours_is_a_conflict_not_a_takeover(ctx):
    ctx.client("iam").create_role(RoleName="SageMakerGreenGrassV2MinimalResourceRole",
                                  AssumeRolePolicyDocument=json.dumps(policies.TES_TRUST_POLICY))
    (role,) = [c for c in setup.plan(ctx) if c.step == "iam-role"]
    assert role.action == setup.CONFLICT
    with pytest.raises(NameConflict, match="role"):
        run(setup.apply(ctx))
    destroy = {c.step: c.action for c in setup.destroy_plan(ctx)}
    assert destroy["iam-role"] == setup.NONE


def test_a_compilation_role_that_is_not_ours_is_a_conflict(ctx):
    ctx.client("iam").create_role(RoleName=NEO_ROLE, AssumeRolePolicyDocument=json.dumps(policies.TES_TRUST_POLICY))
    (role,) = [c for c in setup.plan(ctx) if c.step == "compile-role"]
    assert role.action == setup.CONFLICT
    with pytest.raises(NameConflict, match=NEO_ROLE):
        run(setup.apply(ctx))
    # Nothing was changed before the conflict: the compilation role's step runs first.
    assert [r["RoleName"] for r in ctx.client("iam").list_roles()["Roles"]] == [NEO_ROLE]
    # The runbook preset does not use it, and never deletes what is not ours.
    (role,) = [c for c in setup.plan(ctx, SetupConfig(preset="runbook")) if c.step == "compile-role"]
    assert role.action == setup.NONE and "not ours" in role.summary


def test_the_compilation_role_is_named_after_the_edge_role_or_outright():
    assert SetupConfig(role_name="EdgeRole1").compile_role == "EdgeRole1-NeoCompilation"
    assert SetupConfig(compile_role_name="NeoRole").validate().compile_role == "NeoRole"
    assert len(SetupConfig(role_name="R" * 64).compile_role) == 64
    with pytest.raises(ConfigError, match="three different roles"):
        SetupConfig(compile_role_name="SageMakerGreenGrassV2MinimalResourceRole").validate()
    with pytest.raises(ConfigError, match="compile_role_name"):
        SetupConfig().replace(compile_role_name="bad role").validate()
    assert SetupConfig().replace(compile_role_name="").compile_role_name is None  # empty text: the default
    # Under the runbook preset too: its apply and destroy remove a compilation role of ours by that name.
    with pytest.raises(ConfigError, match="three different roles"):
        SetupConfig(preset="runbook", compile_role_name="SageMakerGreenGrassV2MinimalResourceRole").validate()


@pytest.mark.parametrize("change, word", [
    ({"thing_name": "MyThing"}, "thing_name"),
    ({"thing_group_name": "Group One"}, "thing_group_name"),
    ({"preset": "admin"}, "preset"),
    ({"bucket": "Bad_Bucket"}, "bucket"),
    ({"volume_gib": 2}, "volume_gib"),
    ({"ami_parameter": "ami-0123456789abcdef0"}, "ami_parameter"),
])
def test_bad_settings_are_refused_with_the_setting_named(change, word):
    with pytest.raises(ConfigError, match=word):
        SetupConfig().replace(**change).validate()


def test_env_file_has_the_runbooks_keys_in_order():
    text = render_env(SetupConfig(deploy_dev_tools=True), "eu-central-1")
    assert [line.split("=")[0] for line in text.splitlines()] == list(ENV_KEYS)
    assert "DEPLOY_DEV_TOOLS=true" in text and "GGC_ROOT_PATH=/greengrass/v2" in text
    with pytest.raises(ConfigError, match="Unknown setup setting"):
        SetupConfig().replace(thing="x")


def test_edge_server_in_a_given_subnet(ctx):
    ec2 = ctx.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    run(setup.apply(ctx, SetupConfig(subnet_id=subnet)))
    (instance,) = [i for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["edge-server"]}])[
        "Reservations"] for i in r["Instances"]]
    assert instance["SubnetId"] == subnet


def test_a_bucket_name_taken_in_another_account_is_a_conflict_in_the_plan(ctx, monkeypatch):
    from actions.setup import steps

    # The one fault we cannot make for real here: moto has a single account, so "owned by someone
    # else" (HTTP 403 on HeadBucket) is simulated by answering as S3 does for a foreign bucket.
    real = steps.BucketStep._state

    def foreign(self, t):
        return {"foreign": True}

    monkeypatch.setattr(steps.BucketStep, "_state", foreign)
    changes = {c.step: c for c in setup.plan(ctx)}
    assert changes["bucket"].action == setup.CONFLICT and "--bucket" in changes["bucket"].details[0]
    assert changes["scripts"].action == setup.CREATE
    monkeypatch.setattr(steps.BucketStep, "_state", real)


def test_the_edge_server_scripts_are_valid_bash(tmp_path):
    import subprocess

    from actions.setup.config import SCRIPT_NAMES, script, user_data

    files = {name: script(name) for name in SCRIPT_NAMES}
    files["user-data"] = user_data(SetupConfig(), "ec2-scripts-us-east-1-123456789012")
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, (name, proc.stderr)
        assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    assert "--env-file" in files["start-greengrass.sh"] and "docker" in files["install-greengrass.sh"]
