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
