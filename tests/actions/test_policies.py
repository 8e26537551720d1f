"""The least-privilege documents pass parliament; the runbook's wide one does not (the linter bites)."""

from __future__ import annotations

import json

import pytest

from actions.setup import policies

SCOPE = policies.Scope("aws", "eu-west-1", "123456789012", "ec2-scripts-eu-west-1-123456789012", "mything",
                       "mythinggroupname", "GreengrassV2TokenExchangeRole", "GreengrassCoreTokenExchangeRoleAlias",
                       "com.greengrass.SageMakerEdgeManager.ImageClassification")


@pytest.mark.parametrize("dev_tools", [False, True])
def test_least_privilege_documents_have_no_findings(dev_tools):
    scope = policies.Scope(**{**SCOPE.__dict__, "deploy_dev_tools": dev_tools})
    docs = policies.least_privilege(scope)
    assert "GreengrassComponentAccessPolicy" in docs
    for name, doc in docs.items():
        assert policies.lint(doc) == [], name
    assert policies.lint(policies.tes_role_policy(scope)) == []
    compile_docs = policies.compile_role_policies(scope)
    assert list(compile_docs) == ["EdgeConsoleCompilationAccess"]
    assert policies.lint(compile_docs["EdgeConsoleCompilationAccess"]) == []
    role = "arn:aws:iam::123456789012:role/SageMakerGreenGrassV2MinimalResourceRole-NeoCompilation"
    assert policies.lint_trust(policies.compile_trust_policy(scope), role) == []


def test_the_trust_linter_catches_a_misspelt_condition_key():
    doc = policies.compile_trust_policy(SCOPE)
    doc["Statement"][0]["Condition"]["ArnLike"] = {"aws:SourceArm": "arn:aws:sagemaker:*:123456789012:*"}
    assert any("aws:SourceArm" in f for f in policies.lint_trust(doc, "arn:aws:iam::123456789012:role/x"))


def _grants(docs: dict, action: str) -> list[str]:
    """The resources the documents allow `action` on."""
    out = []
    for doc in docs.values():
        for st in doc["Statement"]:
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            if st["Effect"] == "Allow" and action in actions:
                out += [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
    return out


def test_only_the_compilation_role_writes_compiled_models():
    bucket = "arn:aws:s3:::ec2-scripts-eu-west-1-123456789012"
    edge, neo = policies.least_privilege(SCOPE), policies.compile_role_policies(SCOPE)
    assert _grants(edge, "s3:PutObject") == []
    assert _grants(edge, "s3:GetObject") == [f"{bucket}/scripts/*", f"{bucket}/compiled/*"]
    assert _grants(neo, "s3:PutObject") == [f"{bucket}/compiled/*"]
    assert _grants(neo, "s3:GetObject") == [f"{bucket}/models/*"]
    assert _grants(neo, "logs:PutLogEvents") == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/CompilationJobs",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/CompilationJobs:log-stream:*"]
    assert not [a for d in neo.values() for st in d["Statement"] for a in st["Action"]
                if not a.startswith(("s3:", "logs:"))]


def test_compilation_role_trusts_sagemaker_only_for_our_compilation_jobs():
    (statement,) = policies.compile_trust_policy(SCOPE)["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:compilation-job/*"}}
    edge = {s["Principal"]["Service"] for s in policies.edge_trust_policy("least-privilege")["Statement"]}
    assert edge == {"ec2.amazonaws.com"}
    runbook = {s["Principal"]["Service"] for s in policies.edge_trust_policy("runbook")["Statement"]}
    assert runbook == edge | {"credentials.iot.amazonaws.com", "sagemaker.amazonaws.com"}


def test_least_privilege_names_only_our_resources():
    text = json.dumps(policies.least_privilege(SCOPE))
    assert "arn:aws:s3:::ec2-scripts-eu-west-1-123456789012/scripts/*" in text
    assert "thinggroup/mythinggroupname" in text and "thing/mything" in text
    assert "AmazonS3FullAccess" not in text
    for doc in policies.least_privilege(SCOPE).values():
        for statement in doc["Statement"]:
            if statement["Resource"] == "*":
                assert statement["Sid"] in ("CallsWithoutResources", "DeployDevTools")


def test_the_linter_flags_the_runbooks_wildcard_policy():
    assert any("RESOURCE_STAR" in f for f in policies.lint(policies.RUNBOOK_COMPONENT_ACCESS))


def test_unknown_preset():
    from actions.errors import ConfigError

    with pytest.raises(ConfigError, match="least-privilege"):
        policies.role_policies("admin", SCOPE)
