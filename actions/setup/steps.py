"""The steps of the setup plan. Each one can `check` (read only), `apply` and `destroy`.

`check` makes only read calls (Get/List/Describe/Head), so `plan` and a second `apply` never
mutate anything. `apply` re-checks and does only what differs, so it is idempotent and resumes
after a failure. `destroy` touches only resources tagged `edge-console:stack=<stack>`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from actions.aws import aws_call, error_code
from actions.context import Context
from actions.errors import AwsError, ConfigError, NameConflict
from actions.files import write_atomic
from actions.progress import RUNNING, Progress
from actions.setup import policies
from actions.setup.config import (C5_LARGE_PRICE_USD_PER_HOUR, PRICE_DATE, PRICE_REGION, SetupConfig,
                                  render_env, scripts, user_data)

CREATE, UPDATE, NONE, DELETE, CONFLICT = "create", "update", "none", "delete", "conflict"


@dataclass(frozen=True)
class Change:
    """What one step would do.

    Attributes:
        step: the step's key (e.g. "iam-role").
        title: what the step manages, for people.
        action: create, update, none (left alone), delete, or conflict (exists and is not ours).
        summary: one line.
        details: further lines (what differs, IDs, costs, reasons).
        documents: policy documents the step would apply, by name, shown before apply.
    """

    step: str
    title: str
    action: str
    summary: str
    details: tuple[str, ...] = ()
    documents: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The change as a JSON-ready dict."""
        return {"step": self.step, "title": self.title, "action": self.action, "summary": self.summary,
                "details": list(self.details), "documents": self.documents}


@dataclass(frozen=True)
class Target:
    """A SetupConfig resolved against one account and region."""

    ctx: Context
    cfg: SetupConfig
    bucket: str
    scope: policies.Scope

    @classmethod
    def resolve(cls, ctx: Context, cfg: SetupConfig) -> Target:
        cfg.validate()
        account = ctx.account_id
        bucket = cfg.bucket_name(ctx.region, account)
        scope = policies.Scope(ctx.partition, ctx.region, account, bucket, cfg.thing_name, cfg.thing_group_name,
                               cfg.tes_role_name, cfg.tes_role_alias_name, cfg.component_prefix,
                               cfg.deploy_dev_tools)
        return cls(ctx, cfg, bucket, scope)

    @property
    def tags(self) -> list[dict[str, str]]:
        key, value = self.ctx.tag
        return [{"Key": key, "Value": value}]

    def ours(self, tags: list[dict[str, str]] | dict[str, str] | None) -> bool:
        key, value = self.ctx.tag
        if isinstance(tags, dict):
            return tags.get(key) == value
        return any(t.get("Key") == key and t.get("Value") == value for t in tags or [])


def _progress(step: str, message: str, **data) -> Progress:
    return Progress(step, RUNNING, message, data=data or None)


class Step:
    """Base class: a resource (or a small set of them) the plan manages."""

    key = ""
    title = ""

    def check(self, t: Target) -> Change:  # pragma: no cover - every step overrides
        raise NotImplementedError

    def apply(self, t: Target) -> Iterator[Progress]:  # pragma: no cover
        raise NotImplementedError

    def destroy_check(self, t: Target) -> Change:  # pragma: no cover
        raise NotImplementedError

    def destroy(self, t: Target) -> Iterator[Progress]:  # pragma: no cover
        raise NotImplementedError

    def change(self, action: str, summary: str, details=(), documents=None) -> Change:
        return Change(self.key, self.title, action, summary, tuple(details), documents or {})


# --- IAM --------------------------------------------------------------------------------------


class RoleStep(Step):
    """An IAM role with its trust policy, inline policies and managed policy attachments.

    `trust` is a document, or a function of the Target for one that names the account or depends
    on the preset.
    """

    def __init__(self, key: str, title: str, name: Callable[[SetupConfig], str],
                 trust: dict | Callable[[Target], dict],
                 wanted: Callable[[Target], tuple[dict[str, dict], tuple[str, ...]]], description: str,
                 notes: Callable[[Target], list[str]] = lambda t: []):
        self.key, self.title, self._name, self._trust_doc = key, title, name, trust
        self._wanted, self.description, self._notes = wanted, description, notes

    def _trust(self, t: Target) -> dict:
        return self._trust_doc(t) if callable(self._trust_doc) else self._trust_doc

    def _state(self, t: Target) -> dict[str, Any] | None:
        iam, name = t.ctx.client("iam"), self._name(t.cfg)
        with aws_call(f"read the IAM role {name}"):
            try:
                role = iam.get_role(RoleName=name)["Role"]
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity":
                    return None
                raise
            tags = iam.list_role_tags(RoleName=name).get("Tags", [])
            inline = {}
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
                for pname in page["PolicyNames"]:
                    inline[pname] = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
            managed = set()
            for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
                managed.update(p["PolicyArn"] for p in page["AttachedPolicies"])
        return {"role": role, "tags": tags, "inline": inline, "managed": managed}

    def _diff(self, t: Target, state: dict[str, Any]) -> dict[str, Any]:
        inline, managed = self._wanted(t)
        have = state["inline"]
        return {
            "trust": policies.normalize(state["role"]["AssumeRolePolicyDocument"]) != policies.normalize(self._trust(t)),
            "put": [n for n, doc in inline.items()
                    if n not in have or policies.normalize(have[n]) != policies.normalize(doc)],
            "delete": sorted(set(have) - set(inline)),
            "attach": sorted(set(managed) - state["managed"]),
            "detach": sorted(state["managed"] - set(managed)),
        }

    def _documents(self, t: Target) -> dict[str, Any]:
        inline, managed = self._wanted(t)
        docs: dict[str, Any] = {"trust policy": self._trust(t)}
        docs.update({f"inline {n}": d for n, d in inline.items()})
        docs["managed policies"] = list(managed)
        return docs

    def check(self, t: Target) -> Change:
        name = self._name(t.cfg)
        state = self._state(t)
        notes = self._notes(t)
        if state is None:
            return self.change(CREATE, f"create role {name}", notes, self._documents(t))
        if not t.ours(state["tags"]):
            return self.change(CONFLICT, f"role {name} exists but was not created by stack {t.ctx.stack}",
                               ["choose another role name, or delete or tag that role yourself"])
        diff = self._diff(t, state)
        lines = (["update trust policy"] if diff["trust"] else []) + \
            [f"put inline policy {n}" for n in diff["put"]] + [f"delete inline policy {n}" for n in diff["delete"]] + \
            [f"attach {a}" for a in diff["attach"]] + [f"detach {a}" for a in diff["detach"]]
        if not lines:
            return self.change(NONE, f"role {name} is up to date", notes, self._documents(t))
        return self.change(UPDATE, f"update role {name}", lines + notes, self._documents(t))

    def apply(self, t: Target) -> Iterator[Progress]:
        iam, name = t.ctx.client("iam"), self._name(t.cfg)
        state = self._state(t)
        if state is None:
            with aws_call(f"create the IAM role {name}"):
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(self._trust(t)),
                                Description=self.description, Tags=t.tags)
            yield _progress(self.key, f"created role {name}")
            state = self._state(t)
        elif not t.ours(state["tags"]):
            raise NameConflict(f"The IAM role {name} exists but was not created by stack {t.ctx.stack}; "
                               "pass another role name or remove that role.")
        diff = self._diff(t, state)
        inline, _ = self._wanted(t)
        with aws_call(f"set the policies of the IAM role {name}"):
            if diff["trust"]:
                iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(self._trust(t)))
                yield _progress(self.key, "updated the trust policy")
            for pname in diff["put"]:
                iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=json.dumps(inline[pname]))
                yield _progress(self.key, f"put inline policy {pname}")
            for pname in diff["delete"]:
                iam.delete_role_policy(RoleName=name, PolicyName=pname)
                yield _progress(self.key, f"deleted inline policy {pname}")
            for arn in diff["attach"]:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
                yield _progress(self.key, f"attached {arn.rsplit('/', 1)[-1]}")
            for arn in diff["detach"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
                yield _progress(self.key, f"detached {arn.rsplit('/', 1)[-1]}")

    def destroy_check(self, t: Target) -> Change:
        name = self._name(t.cfg)
        state = self._state(t)
        if state is None:
            return self.change(NONE, f"role {name} does not exist")
        if not t.ours(state["tags"]):
            return self.change(NONE, f"role {name} is not ours: left alone")
        return self.change(DELETE, f"delete role {name} and its policies")

    def destroy(self, t: Target) -> Iterator[Progress]:
        iam, name = t.ctx.client("iam"), self._name(t.cfg)
        state = self._state(t)
        if state is None or not t.ours(state["tags"]):
            return
        with aws_call(f"delete the IAM role {name}"):
            for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
                iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"],
                                                      RoleName=name)
            for arn in state["managed"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
            for pname in state["inline"]:
                iam.delete_role_policy(RoleName=name, PolicyName=pname)
            iam.delete_role(RoleName=name)
        yield _progress(self.key, f"deleted role {name}")


def _edge_role_policies(t: Target):
    return policies.role_policies(t.cfg.preset, t.scope)


def _edge_role_notes(t: Target) -> list[str]:
    notes = [f"preset {t.cfg.preset}"]
    if t.cfg.preset == "runbook":
        notes.append(policies.SINGLE_ROLE)
    else:
        notes.append(f"not trusted by sagemaker.amazonaws.com and cannot write {policies.COMPILED_PREFIX}: "
                     f"Neo compiles as {t.cfg.compile_role}")
    notes += [f"{name.rsplit('/', 1)[-1]}: {why}" for name, why in policies.OMITTED.items()]
    return notes


class CompileRoleStep(RoleStep):
    """The role SageMaker Neo assumes to run our compilation jobs (least-privilege preset).

    Trusted by sagemaker.amazonaws.com only, for compilation jobs of our account and region; reads
    `models/`, writes `compiled/` and the compilation logs. Under the runbook preset there is no
    such role (compile uses the edge server's, as the chapter has it; the plan says why and what
    that risks), and one left by an earlier least-privilege apply is removed.
    """

    def __init__(self) -> None:
        super().__init__("compile-role", "SageMaker Neo compilation role", lambda c: c.compile_role,
                         lambda t: policies.compile_trust_policy(t.scope),
                         lambda t: (policies.compile_role_policies(t.scope), ()),
                         "edge-console: assumed by SageMaker Neo for this stack's compilation jobs",
                         lambda t: [f"trusted by sagemaker.amazonaws.com only, for compilation jobs of account "
                                    f"{t.scope.account} in {t.scope.region}; the edge server cannot write "
                                    f"{policies.COMPILED_PREFIX}"])

    def check(self, t: Target) -> Change:
        if t.cfg.preset != "runbook":
            return super().check(t)
        name, state = t.cfg.compile_role, self._state(t)
        why = [f"compile uses {t.cfg.role_name}", policies.SINGLE_ROLE]
        if state is None:
            return self.change(NONE, "no separate compilation role under the runbook preset", why)
        if not t.ours(state["tags"]):
            return self.change(NONE, f"role {name} exists (not ours): not used, left alone", why)
        return self.change(DELETE, f"delete role {name}: the runbook preset compiles as {t.cfg.role_name}", why)

    def apply(self, t: Target) -> Iterator[Progress]:
        if t.cfg.preset != "runbook":
            yield from super().apply(t)
            return
        yield from self.destroy(t)


class InstanceProfileStep(Step):
    key, title = "instance-profile", "EC2 instance profile"

    def _state(self, t: Target):
        iam, name = t.ctx.client("iam"), t.cfg.role_name
        with aws_call(f"read the instance profile {name}"):
            try:
                profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity":
                    return None
                raise
        # GetInstanceProfile carries the tags itself (one read instead of two).
        tags = profile.get("Tags", [])
        return {"roles": [r["RoleName"] for r in profile.get("Roles", [])], "tags": tags}

    def check(self, t: Target) -> Change:
        name, state = t.cfg.role_name, self._state(t)
        if state is None:
            return self.change(CREATE, f"create instance profile {name} holding role {name}")
        if not t.ours(state["tags"]):
            return self.change(CONFLICT, f"instance profile {name} exists but is not ours",
                               ["choose another role name, or remove that instance profile"])
        if state["roles"] != [name]:
            return self.change(UPDATE, f"put role {name} in instance profile {name}")
        return self.change(NONE, f"instance profile {name} is up to date")

    def apply(self, t: Target) -> Iterator[Progress]:
        iam, name, state = t.ctx.client("iam"), t.cfg.role_name, self._state(t)
        with aws_call(f"create the instance profile {name}"):
            if state is None:
                iam.create_instance_profile(InstanceProfileName=name, Tags=t.tags)
                yield _progress(self.key, f"created instance profile {name}")
                state = {"roles": [], "tags": t.tags}
            elif not t.ours(state["tags"]):
                raise NameConflict(f"The instance profile {name} exists but was not created by stack "
                                   f"{t.ctx.stack}; pass another role name or remove it.")
            for other in state["roles"]:
                if other != name:
                    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=other)
            if name not in state["roles"]:
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
                yield _progress(self.key, f"added role {name}")

    def destroy_check(self, t: Target) -> Change:
        state = self._state(t)
        if state is None or not t.ours(state["tags"]):
            return self.change(NONE, f"instance profile {t.cfg.role_name}: nothing of ours")
        return self.change(DELETE, f"delete instance profile {t.cfg.role_name}")

    def destroy(self, t: Target) -> Iterator[Progress]:
        iam, name, state = t.ctx.client("iam"), t.cfg.role_name, self._state(t)
        if state is None or not t.ours(state["tags"]):
            return
        with aws_call(f"delete the instance profile {name}"):
            for role in state["roles"]:
                iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role)
            iam.delete_instance_profile(InstanceProfileName=name)
        yield _progress(self.key, f"deleted instance profile {name}")


# --- IoT --------------------------------------------------------------------------------------


def _iot_tags(t: Target, arn: str) -> list[dict[str, str]] | None:
    """The IoT resource's tags, or None when the endpoint cannot list them.

    moto (under the sandbox) does not implement IoT ListTagsForResource (HTTP 500, or NotImplemented
    from the sandbox's layer); real AWS always does. None makes the caller fall back to a second ownership mark.
    """
    try:
        return t.ctx.client("iot").list_tags_for_resource(resourceArn=arn).get("tags", [])
    except Exception as exc:
        from botocore.parsers import ResponseParserError

        unimplemented = isinstance(exc, ResponseParserError) or error_code(exc) in (
            "500", "InternalFailure", "NotImplemented")
        if t.ctx.is_sandbox and unimplemented:
            return None
        with aws_call(f"read the tags of {arn}"):
            raise


class ThingGroupStep(Step):
    key, title = "thing-group", "IoT thing group (the fleet)"

    def _state(self, t: Target):
        iot, name = t.ctx.client("iot"), t.cfg.thing_group_name
        with aws_call(f"read the thing group {name}"):
            try:
                group = iot.describe_thing_group(thingGroupName=name)
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
        arn = group["thingGroupArn"]
        tags = _iot_tags(t, arn)
        if tags is None:  # second mark: the stack attribute we also set on the group
            attrs = group.get("thingGroupProperties", {}).get("attributePayload", {}).get("attributes", {})
            tags = [{"Key": k, "Value": v} for k, v in attrs.items()]
        return {"arn": arn, "tags": tags}

    def check(self, t: Target) -> Change:
        state = self._state(t)
        if state is None:
            return self.change(CREATE, f"create thing group {t.cfg.thing_group_name}")
        if not t.ours(state["tags"]):
            return self.change(NONE, f"thing group {t.cfg.thing_group_name} exists (not ours): used, never deleted")
        return self.change(NONE, f"thing group {t.cfg.thing_group_name} exists", [state["arn"]])

    def apply(self, t: Target) -> Iterator[Progress]:
        if self._state(t) is None:
            with aws_call(f"create the thing group {t.cfg.thing_group_name}"):
                key, value = t.ctx.tag
                arn = t.ctx.client("iot").create_thing_group(
                    thingGroupName=t.cfg.thing_group_name, tags=t.tags,
                    thingGroupProperties={"thingGroupDescription": f"edge-console stack {value}",
                                          "attributePayload": {"attributes": {key: value}}})["thingGroupArn"]
            yield _progress(self.key, f"created thing group {t.cfg.thing_group_name}", arn=arn)

    def destroy_check(self, t: Target) -> Change:
        state = self._state(t)
        if state is None or not t.ours(state["tags"]):
            return self.change(NONE, f"thing group {t.cfg.thing_group_name}: nothing of ours")
        return self.change(DELETE, f"delete thing group {t.cfg.thing_group_name} (its things stay)")

    def destroy(self, t: Target) -> Iterator[Progress]:
        state = self._state(t)
        if state and t.ours(state["tags"]):
            with aws_call(f"delete the thing group {t.cfg.thing_group_name}"):
                t.ctx.client("iot").delete_thing_group(thingGroupName=t.cfg.thing_group_name)
            yield _progress(self.key, f"deleted thing group {t.cfg.thing_group_name}")


class RoleAliasStep(Step):
    key, title = "role-alias", "IoT role alias for the token exchange role"

    def _state(self, t: Target):
        iot, name = t.ctx.client("iot"), t.cfg.tes_role_alias_name
        with aws_call(f"read the role alias {name}"):
            try:
                desc = iot.describe_role_alias(roleAlias=name)["roleAliasDescription"]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
        tags = _iot_tags(t, desc["roleAliasArn"])
        if tags is None:  # second mark: it points at our (tagged) token exchange role
            tags = t.tags if desc["roleArn"] == self._role_arn(t) else []
        return {"role_arn": desc["roleArn"], "tags": tags}

    def _role_arn(self, t: Target) -> str:
        return t.scope.arn("iam", f"role/{t.cfg.tes_role_name}", regional=False)

    def check(self, t: Target) -> Change:
        state, name = self._state(t), t.cfg.tes_role_alias_name
        if state is None:
            return self.change(CREATE, f"create role alias {name} -> {t.cfg.tes_role_name}")
        if not t.ours(state["tags"]):
            return self.change(CONFLICT, f"role alias {name} exists but is not ours",
                               ["pass another TES role alias name, or remove that alias"])
        if state["role_arn"] != self._role_arn(t):
            return self.change(UPDATE, f"point role alias {name} at {t.cfg.tes_role_name}")
        return self.change(NONE, f"role alias {name} is up to date")

    def apply(self, t: Target) -> Iterator[Progress]:
        iot, name, state = t.ctx.client("iot"), t.cfg.tes_role_alias_name, self._state(t)
        with aws_call(f"create the role alias {name}"):
            if state is None:
                iot.create_role_alias(roleAlias=name, roleArn=self._role_arn(t), credentialDurationSeconds=3600,
                                      tags=t.tags)
                yield _progress(self.key, f"created role alias {name}")
            elif not t.ours(state["tags"]):
                raise NameConflict(f"The role alias {name} exists but was not created by stack {t.ctx.stack}; "
                                   "pass another alias name or remove it.")
            elif state["role_arn"] != self._role_arn(t):
                iot.update_role_alias(roleAlias=name, roleArn=self._role_arn(t))
                yield _progress(self.key, f"updated role alias {name}")

    def destroy_check(self, t: Target) -> Change:
        state = self._state(t)
        if state is None or not t.ours(state["tags"]):
            return self.change(NONE, f"role alias {t.cfg.tes_role_alias_name}: nothing of ours")
        return self.change(DELETE, f"delete role alias {t.cfg.tes_role_alias_name}")

    def destroy(self, t: Target) -> Iterator[Progress]:
        state = self._state(t)
        if state and t.ours(state["tags"]):
            with aws_call(f"delete the role alias {t.cfg.tes_role_alias_name}"):
                t.ctx.client("iot").delete_role_alias(roleAlias=t.cfg.tes_role_alias_name)
            yield _progress(self.key, f"deleted role alias {t.cfg.tes_role_alias_name}")


# --- S3 ---------------------------------------------------------------------------------------

PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}


class BucketStep(Step):
    key, title = "bucket", "S3 bucket for scripts and component artifacts"

    def _state(self, t: Target):
        s3, name = t.ctx.client("s3"), t.bucket
        with aws_call(f"read the bucket {name}"):
            try:
                s3.head_bucket(Bucket=name)
            except Exception as exc:
                code = error_code(exc)
                if code in ("404", "NoSuchBucket", "NotFound"):
                    return None
                if code in ("403", "AccessDenied"):
                    return {"foreign": True}
                raise
            try:
                tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
            except Exception as exc:
                if error_code(exc) != "NoSuchTagSet":
                    raise
                tags = []
            try:
                pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            except Exception as exc:
                if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                    raise
                pab = {}
            versioning = s3.get_bucket_versioning(Bucket=name).get("Status")
        return {"foreign": False, "tags": tags, "pab": pab, "versioning": versioning}

    def _diff(self, state) -> list[str]:
        out = []
        if state["pab"] != PUBLIC_ACCESS_BLOCK:
            out.append("block all public access")
        if state["versioning"] != "Enabled":
            out.append("turn versioning on")
        return out

    def check(self, t: Target) -> Change:
        state, name = self._state(t), t.bucket
        if state is None:
            region = "us-east-1 (no LocationConstraint)" if t.ctx.region == "us-east-1" else t.ctx.region
            return self.change(CREATE, f"create bucket {name}",
                               [f"region {region}", "block all public access", "versioning on"])
        if state["foreign"] or not t.ours(state["tags"]):
            return self.change(CONFLICT, f"bucket {name} exists but was not created by stack {t.ctx.stack}",
                               ["pass --bucket with another name (bucket names are global)"])
        diff = self._diff(state)
        if diff:
            return self.change(UPDATE, f"update bucket {name}", diff)
        return self.change(NONE, f"bucket {name} is up to date")

    def apply(self, t: Target) -> Iterator[Progress]:
        s3, name, state = t.ctx.client("s3"), t.bucket, self._state(t)
        if state is not None and (state["foreign"] or not t.ours(state["tags"])):
            raise NameConflict(f"The bucket {name} exists but was not created by stack {t.ctx.stack}; "
                               "pass --bucket with another name.")
        with aws_call(f"create the bucket {name}"):
            if state is None:
                kwargs: dict[str, Any] = {"Bucket": name}
                # us-east-1 is the one region that rejects an explicit LocationConstraint.
                if t.ctx.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": t.ctx.region}
                s3.create_bucket(**kwargs)
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": t.tags})
                yield _progress(self.key, f"created bucket {name}")
                state = {"pab": {}, "versioning": None}
            if state["pab"] != PUBLIC_ACCESS_BLOCK:
                s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
                yield _progress(self.key, "blocked public access")
            if state["versioning"] != "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
                yield _progress(self.key, "turned versioning on")

    def destroy_check(self, t: Target) -> Change:
        state = self._state(t)
        if state is None or state["foreign"] or not t.ours(state["tags"]):
            return self.change(NONE, f"bucket {t.bucket}: nothing of ours")
        return self.change(DELETE, f"empty (every version) and delete bucket {t.bucket}")

    def destroy(self, t: Target) -> Iterator[Progress]:
        s3, name, state = t.ctx.client("s3"), t.bucket, self._state(t)
        if state is None or state["foreign"] or not t.ours(state["tags"]):
            return
        with aws_call(f"empty and delete the bucket {name}"):
            removed = 0
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                        for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                # DeleteObjects takes at most 1,000 keys; a page holds at most 1,000 of each kind.
                for i in range(0, len(keys), 1000):
                    s3.delete_objects(Bucket=name, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
                    removed += len(keys[i:i + 1000])
            s3.delete_bucket(Bucket=name)
        yield _progress(self.key, f"deleted bucket {name} ({removed} object versions)")


class ScriptsStep(Step):
    key, title = "scripts", "edge server scripts and Greengrass env file"

    def _wanted(self, t: Target) -> dict[str, bytes]:
        return {f"scripts/{n}": text.encode() for n, text in scripts(t.cfg, t.ctx.region).items()}

    def _stale(self, t: Target) -> list[str]:
        s3, stale = t.ctx.client("s3"), []
        for key, body in self._wanted(t).items():
            with aws_call(f"read s3://{t.bucket}/{key}"):
                try:
                    etag = s3.head_object(Bucket=t.bucket, Key=key)["ETag"].strip('"')
                except Exception as exc:
                    if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                        stale.append(key)
                        continue
                    raise
            # A single-part upload without KMS has the MD5 of its body as ETag.
            if etag != hashlib.md5(body).hexdigest():
                stale.append(key)
        return stale

    def check(self, t: Target) -> Change:
        env = render_env(t.cfg, t.ctx.region)
        details = ["env file:"] + ["  " + line for line in env.splitlines()]
        bucket = BucketStep()._state(t)
        if bucket is None or bucket["foreign"]:  # nothing to read yet (or not ours to read)
            return self.change(CREATE, f"upload {len(self._wanted(t))} files to s3://{t.bucket}/scripts/", details)
        stale = self._stale(t)
        if stale:
            return self.change(UPDATE, f"upload {', '.join(k.split('/', 1)[1] for k in stale)}", details)
        return self.change(NONE, f"s3://{t.bucket}/scripts/ is up to date", details)

    def apply(self, t: Target) -> Iterator[Progress]:
        s3, wanted = t.ctx.client("s3"), self._wanted(t)
        local = t.ctx.stack_dir / "env"
        env = wanted["scripts/env"]
        if not local.exists() or local.read_bytes() != env:
            write_atomic(local, env, 0o644)
        for key in self._stale(t):
            with aws_call(f"upload s3://{t.bucket}/{key}"):
                s3.put_object(Bucket=t.bucket, Key=key, Body=wanted[key], ContentType="text/plain")
            yield _progress(self.key, f"uploaded {key}", uri=f"s3://{t.bucket}/{key}")

    def destroy_check(self, t: Target) -> Change:
        return self.change(NONE, "scripts go with the bucket")

    def destroy(self, t: Target) -> Iterator[Progress]:
        (t.ctx.stack_dir / "env").unlink(missing_ok=True)
        return iter(())


# --- EC2 --------------------------------------------------------------------------------------

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


class InstanceStep(Step):
    key, title = "instance", "EC2 edge server"

    def _find(self, t: Target) -> list[dict[str, Any]]:
        key, value = t.ctx.tag
        filters = [{"Name": f"tag:{key}", "Values": [value]}, {"Name": "tag:Name", "Values": [t.cfg.instance_name]},
                   {"Name": "instance-state-name", "Values": LIVE_STATES}]
        found = []
        with aws_call("look up the edge server"):
            for page in t.ctx.client("ec2").get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page["Reservations"]:
                    found.extend(reservation["Instances"])
        return found

    @staticmethod
    def describe(instance: dict[str, Any]) -> dict[str, Any]:
        """ID, state and addresses of an instance, as shown to people."""
        return {"instance_id": instance["InstanceId"], "state": instance["State"]["Name"],
                "public_ip": instance.get("PublicIpAddress"), "private_ip": instance.get("PrivateIpAddress"),
                "instance_type": instance.get("InstanceType"), "image_id": instance.get("ImageId")}

    def _cost(self, t: Target) -> str:
        if t.cfg.instance_type == "c5.large":
            return (f"costs about USD {C5_LARGE_PRICE_USD_PER_HOUR}/hour on demand "
                    f"({PRICE_REGION}, Linux, price of {PRICE_DATE}) while it runs")
        return f"{t.cfg.instance_type}: see the EC2 on-demand price list"

    def check(self, t: Target) -> Change:
        found = self._find(t)
        if not found:
            with aws_call(f"read the AMI ID from SSM parameter {t.cfg.ami_parameter}"):
                ami = t.ctx.client("ssm").get_parameter(Name=t.cfg.ami_parameter)["Parameter"]["Value"]
            return self.change(CREATE, f"launch {t.cfg.instance_type} {t.cfg.instance_name}", [
                f"AMI: {ami}, the latest from SSM parameter {t.cfg.ami_parameter}",
                f"root volume {t.cfg.volume_gib} GiB gp3, encrypted", f"instance profile {t.cfg.role_name}",
                "IMDSv2 only; no SSH key, no inbound port (use SSM Session Manager)",
                f"user data fetches s3://{t.bucket}/scripts/ and starts Greengrass", self._cost(t)])
        info = [self.describe(i) for i in found]
        lines = [f"{i['instance_id']} {i['state']} {i['public_ip'] or i['private_ip'] or ''}".strip() for i in info]
        if any(i["state"] in ("stopped", "stopping") for i in info):
            return self.change(UPDATE, f"start {t.cfg.instance_name}", lines + [self._cost(t)])
        if any(i["state"] in ("pending", "shutting-down") for i in info):
            # An apply interrupted while the instance was starting: wait for it this time.
            return self.change(UPDATE, f"wait until {t.cfg.instance_name} is running", lines + [self._cost(t)])
        return self.change(NONE, f"{t.cfg.instance_name} is {info[0]['state']}", lines + [self._cost(t)])

    def apply(self, t: Target) -> Iterator[Progress]:
        ec2, found = t.ctx.client("ec2"), [i for i in self._find(t) if i["State"]["Name"] != "shutting-down"]
        if found:
            stopped = [i["InstanceId"] for i in found if i["State"]["Name"] in ("stopped", "stopping")]
            if stopped:
                yield from self._wait(t, stopped, ("stopped",), "waiting for the instance to stop")
                with aws_call("start the edge server"):
                    ec2.start_instances(InstanceIds=stopped)
            yield from self._wait(t, [i["InstanceId"] for i in found], ("running",), "starting")
            return
        with aws_call(f"read the AMI ID from SSM parameter {t.cfg.ami_parameter}"):
            ami = t.ctx.client("ssm").get_parameter(Name=t.cfg.ami_parameter)["Parameter"]["Value"]
        yield _progress(self.key, f"latest AMI is {ami}", image_id=ami)
        root_device = "/dev/xvda"
        with aws_call(f"describe the AMI {ami}"):
            images = ec2.describe_images(ImageIds=[ami]).get("Images", [])
        if images and images[0].get("RootDeviceName"):
            root_device = images[0]["RootDeviceName"]
        tag_spec = [{"Key": "Name", "Value": t.cfg.instance_name}] + t.tags
        kwargs = dict(
            ImageId=ami, InstanceType=t.cfg.instance_type, MinCount=1, MaxCount=1,
            IamInstanceProfile={"Name": t.cfg.role_name},
            BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {
                "VolumeSize": t.cfg.volume_gib, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}],
            UserData=user_data(t.cfg, t.bucket),
            # IMDSv2 only; two hops so the Greengrass container can reach the instance credentials.
            MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tag_spec},
                               {"ResourceType": "volume", "Tags": tag_spec}],
        )
        if t.cfg.subnet_id:
            kwargs["SubnetId"] = t.cfg.subnet_id
        # A new instance profile takes a few seconds to reach EC2 on real AWS; retry only that.
        for attempt in range(12):
            try:
                instance = ec2.run_instances(**kwargs)["Instances"][0]
                break
            except Exception as exc:
                if (error_code(exc) == "InvalidParameterValue" and "instance profile" in str(exc).lower()
                        and attempt < 11 and not t.ctx.is_sandbox):
                    yield _progress(self.key, "waiting for the instance profile to propagate")
                    time.sleep(5)
                    continue
                if error_code(exc) in ("VPCIdNotSpecified", "MissingInput"):
                    raise ConfigError("The account has no default VPC to launch the edge server in; pass "
                                      "--set subnet_id=subnet-... (a subnet with outbound internet access).") from None
                with aws_call(f"launch the edge server ({t.cfg.instance_type})"):
                    raise
        iid = instance["InstanceId"]
        yield _progress(self.key, f"launched {iid}", instance_id=iid)
        yield from self._wait(t, [iid], ("running",), "waiting until running")

    def _wait(self, t: Target, ids: list[str], states: tuple[str, ...], message: str,
              timeout: float = 600.0) -> Iterator[Progress]:
        ec2, delay = t.ctx.client("ec2"), (0.2 if t.ctx.is_sandbox else 5.0)
        deadline = time.monotonic() + timeout
        while True:
            with aws_call("read the edge server's state"):
                reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
            instances = [i for r in reservations for i in r["Instances"]]
            if instances and all(i["State"]["Name"] in states for i in instances):
                for i in instances:
                    info = self.describe(i)
                    yield _progress(self.key, f"{info['instance_id']} {info['state']} "
                                    f"{info['public_ip'] or info['private_ip'] or ''}".strip(), **info)
                return
            if time.monotonic() > deadline:
                raise AwsError(f"The edge server {', '.join(ids)} did not reach {'/'.join(states)} in "
                               f"{int(timeout)} s; check it in the EC2 console, then run apply again.")
            yield _progress(self.key, message)
            time.sleep(delay)

    def destroy_check(self, t: Target) -> Change:
        found = self._find(t)
        if not found:
            return self.change(NONE, f"no {t.cfg.instance_name} of ours")
        return self.change(DELETE, f"terminate {', '.join(i['InstanceId'] for i in found)}")

    def destroy(self, t: Target) -> Iterator[Progress]:
        ids = [i["InstanceId"] for i in self._find(t)]
        if not ids:
            return
        with aws_call("terminate the edge server"):
            t.ctx.client("ec2").terminate_instances(InstanceIds=ids)
        yield _progress(self.key, f"terminating {', '.join(ids)}")
        yield from self._wait(t, ids, ("terminated",), "waiting until terminated")


# --- what compile, package and deploy made ------------------------------------------------------


class PublishedStep(Step):
    """Deployments, components and compilation jobs that carry this stack's tag.

    `apply` creates none of them (compile, package and deploy do); `destroy` removes them first,
    before the role, bucket and group they depend on: deployments are canceled and deleted,
    component versions deleted, compilation jobs deleted.
    """

    key, title = "published", "deployments, components and compilation jobs of this stack"

    def _ours(self, t: Target) -> dict[str, list[str]]:
        gg, key, value = t.ctx.client("greengrassv2"), *t.ctx.tag
        found: dict[str, list[str]] = {"deployments": [], "components": [], "jobs": []}
        with aws_call("list this stack's deployments"):
            for page in gg.get_paginator("list_deployments").paginate(historyFilter="ALL"):
                for dep in page.get("deployments", []):
                    tags = gg.get_deployment(deploymentId=dep["deploymentId"]).get("tags") or {}
                    if tags.get(key) == value:
                        found["deployments"].append(dep["deploymentId"])
        with aws_call("list this stack's components"):
            for page in gg.get_paginator("list_components").paginate(scope="PRIVATE"):
                for comp in page.get("components", []):
                    if gg.list_tags_for_resource(resourceArn=comp["arn"]).get("tags", {}).get(key) != value:
                        continue
                    for vpage in gg.get_paginator("list_component_versions").paginate(arn=comp["arn"]):
                        found["components"] += [v["arn"] for v in vpage.get("componentVersions", [])]
        sm = t.ctx.client("sagemaker")
        with aws_call("list this stack's compilation jobs"):
            for page in sm.get_paginator("list_compilation_jobs").paginate():
                for job in page.get("CompilationJobSummaries", []):
                    tags = sm.list_tags(ResourceArn=job["CompilationJobArn"]).get("Tags", [])
                    if t.ours(tags):
                        found["jobs"].append(job["CompilationJobName"])
        return found

    def check(self, t: Target) -> Change:
        return self.change(NONE, "made by compile, package and deploy (nothing to create here)")

    def apply(self, t: Target) -> Iterator[Progress]:
        return iter(())

    def _teardown_devices(self, t: Target, found: dict[str, list[str]]) -> Iterator[Progress]:
        """Deleting a deployment leaves its components running on the devices: first deploy an
        empty configuration to every target whose latest deployment is ours, and follow it.

        Devices that do not confirm within `cfg.teardown_timeout_s` (offline ones) keep the
        components until they get another deployment; the event says which.
        """
        from actions import deploy

        gg, (key, value) = t.ctx.client("greengrassv2"), t.ctx.tag
        targets = set()
        for dep_id in found["deployments"]:
            with aws_call(f"read the deployment {dep_id}"):
                dep = gg.get_deployment(deploymentId=dep_id)
            if dep.get("isLatestForTarget") and dep.get("deploymentStatus") in ("ACTIVE", "COMPLETED"):
                targets.add(dep["targetArn"])
        for target in sorted(targets):
            name = target.rsplit("/", 1)[-1]
            with aws_call(f"remove our components from the devices of {name}"):
                dep_id = gg.create_deployment(targetArn=target, deploymentName=f"{t.ctx.stack}-teardown",
                                              components={}, tags={key: value})["deploymentId"]
            found["deployments"].append(dep_id)
            yield _progress(self.key, f"removing our components from the devices of {name}", deployment_id=dep_id)
            # Wait only for devices that are online now; an UNHEALTHY one would only run out the clock.
            if ":thing/" in target:
                with aws_call(f"read the core device {name}"):
                    devices = [{"coreDeviceThingName": name,
                                "status": gg.get_core_device(coreDeviceThingName=name).get("status")}]
            else:
                devices = deploy.core_devices(t.ctx, target)
            online = [d["coreDeviceThingName"] for d in devices if d.get("status") == "HEALTHY"]
            outcome = {d["coreDeviceThingName"]: "OFFLINE" for d in devices if d.get("status") != "HEALTHY"}
            if online:
                last = None
                for last in deploy.follow(t.ctx, dep_id, timeout=t.cfg.teardown_timeout_s, devices=online):
                    pass
                outcome.update((last.data or {}).get("devices") or {})
            left = sorted(d for d, status in outcome.items() if status not in deploy.SUCCESS)
            yield _progress(self.key, f"components removed from the devices of {name}" if not left else
                            f"{', '.join(left)} did not confirm; their components stay until their next deployment",
                            devices=outcome)

    def destroy_check(self, t: Target) -> Change:
        try:
            found = self._ours(t)
        except AwsError as exc:
            # A plain moto endpoint (no sandbox layer) serves neither Greengrass V2 nor compilation
            # jobs and answers with an HTML error page; real AWS and the sandbox never answer HTML.
            if t.ctx.is_sandbox and "<!doctype html" in str(exc).lower():
                return self.change(NONE, "this endpoint serves no Greengrass V2 or SageMaker: nothing to remove")
            raise
        if not any(found.values()):
            return self.change(NONE, "no deployments, components or compilation jobs of ours")
        return self.change(DELETE, f"remove {len(found['deployments'])} deployments, {len(found['components'])} "
                           f"component versions, {len(found['jobs'])} compilation jobs")

    def destroy(self, t: Target) -> Iterator[Progress]:
        gg, sm, found = t.ctx.client("greengrassv2"), t.ctx.client("sagemaker"), self._ours(t)
        yield from self._teardown_devices(t, found)
        for dep_id in found["deployments"]:
            with aws_call(f"remove the deployment {dep_id}"):
                if gg.get_deployment(deploymentId=dep_id).get("deploymentStatus") == "ACTIVE":
                    gg.cancel_deployment(deploymentId=dep_id)
                gg.delete_deployment(deploymentId=dep_id)
            yield _progress(self.key, f"deleted deployment {dep_id}")
        for arn in found["components"]:
            with aws_call(f"delete the component {arn}"):
                gg.delete_component(arn=arn)
            yield _progress(self.key, f"deleted {arn.split(':components:', 1)[-1]}")
        for job in found["jobs"]:
            with aws_call(f"delete the compilation job {job}"):
                try:
                    sm.delete_compilation_job(CompilationJobName=job)
                except Exception as exc:
                    # A running job must be stopped first; stop it and leave the record.
                    if error_code(exc) not in ("ValidationException", "ConflictException"):
                        raise
                    sm.stop_compilation_job(CompilationJobName=job)
            yield _progress(self.key, f"deleted compilation job {job}")


def all_steps() -> list[Step]:
    """The plan's steps, in apply order (destroy runs them backwards)."""
    return [
        # First: a stack converted from the single role keeps a role Neo may assume at every point
        # (the next step takes the sagemaker trust away from the edge server's role).
        CompileRoleStep(),
        RoleStep("iam-role", "edge server IAM role", lambda c: c.role_name,
                 lambda t: policies.edge_trust_policy(t.cfg.preset), _edge_role_policies,
                 "edge-console: the edge server (EC2); under the runbook preset also the Neo compilation jobs",
                 _edge_role_notes),
        InstanceProfileStep(),
        RoleStep("tes-role", "Greengrass token exchange role", lambda c: c.tes_role_name, policies.TES_TRUST_POLICY,
                 lambda t: ({"GreengrassV2TokenExchangeRoleAccess": policies.tes_role_policy(t.scope)}, ()),
                 "edge-console: credentials of Greengrass components on the core devices"),
        RoleAliasStep(),
        ThingGroupStep(),
        BucketStep(),
        ScriptsStep(),
        InstanceStep(),
        PublishedStep(),
    ]
