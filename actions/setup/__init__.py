"""Setup: the IAM roles, bucket, scripts, IoT names and EC2 edge server of the runbook, as a plan.

Under the least-privilege preset (the default) SageMaker Neo compiles as a role of its own
(`SetupConfig.compile_role`), trusted by SageMaker only; under the runbook preset it uses the edge
server's role, as the chapter does. `outputs()["compile_role_arn"]` names the one to use, and
`setup.json` keeps it for `actions.compile`.

    changes = setup.plan(ctx, cfg)          # read only: what would be created, changed, left alone
    for event in setup.apply(ctx, cfg):     # idempotent; run it again to resume after a failure
        ...
    for event in setup.destroy(ctx, cfg):   # only what carries edge-console:stack=<stack>
        ...
"""

from __future__ import annotations

from typing import Iterator

from actions.context import Context
from actions.errors import EdgeConsoleError, NameConflict
from actions.files import write_json
from actions.progress import DONE, FAILED, RUNNING, SKIPPED, Progress
from actions.setup.config import (C5_LARGE_PRICE_USD_PER_HOUR, PRICE_DATE, PRICE_REGION, SetupConfig,
                                  parse_env, render_env)
from actions.setup.steps import CONFLICT, CREATE, DELETE, NONE, UPDATE, Change, Step, Target, all_steps

__all__ = ["SetupConfig", "Change", "Step", "plan", "apply", "destroy_plan", "destroy", "outputs", "render_env",
           "parse_env", "C5_LARGE_PRICE_USD_PER_HOUR", "PRICE_DATE", "PRICE_REGION",
           "CREATE", "UPDATE", "NONE", "DELETE", "CONFLICT"]


def plan(ctx: Context, cfg: SetupConfig | None = None) -> list[Change]:
    """What `apply` would do, step by step, with the policy documents it would apply. Read only.

    Raises:
        ConfigError: a setting is invalid. AwsError subclasses: a read failed.
    """
    t = Target.resolve(ctx, cfg or SetupConfig())
    return [step.check(t) for step in all_steps()]


def apply(ctx: Context, cfg: SetupConfig | None = None) -> Iterator[Progress]:
    """Create or update everything in the plan, yielding progress; a second run changes nothing.

    Each step re-checks first and only does what differs, so running it again after a failure
    resumes where it stopped. The outputs (ARNs, bucket, instance) go to `<stack dir>/setup.json`.

    Yields:
        Progress events; per step a "running" event, sub-step events, then "done" or "skipped".
        On a failure, a "failed" event for the step, then the typed error is raised.
    """
    cfg = cfg or SetupConfig()
    t = Target.resolve(ctx, cfg)
    steps = all_steps()
    for n, step in enumerate(steps):
        pct = round(100 * n / len(steps), 1)
        try:
            change = step.check(t)
            if change.action == NONE:
                yield Progress(step.key, SKIPPED, change.summary, round(100 * (n + 1) / len(steps), 1))
                continue
            if change.action == CONFLICT:
                raise NameConflict(f"{change.summary}: {'; '.join(change.details)}.")
            yield Progress(step.key, RUNNING, change.summary, pct)
            for event in step.apply(t):
                yield Progress(event.step, event.state, event.message, pct, event.data)
        except EdgeConsoleError as exc:
            yield Progress(step.key, FAILED, str(exc), pct)
            raise
        yield Progress(step.key, DONE, change.summary, round(100 * (n + 1) / len(steps), 1))
    write_json(ctx.stack_dir / "setup.json", {"config": cfg.__dict__, "outputs": outputs(ctx, cfg)})


def destroy_plan(ctx: Context, cfg: SetupConfig | None = None) -> list[Change]:
    """What `destroy` would remove, in the order it would remove it. Read only."""
    t = Target.resolve(ctx, cfg or SetupConfig())
    return [step.destroy_check(t) for step in reversed(all_steps())]


def destroy(ctx: Context, cfg: SetupConfig | None = None) -> Iterator[Progress]:
    """Remove everything this stack created, in dependency order (instance first, role last).

    Resources that exist but are not tagged with this stack are left alone.
    """
    t = Target.resolve(ctx, cfg or SetupConfig())
    steps = list(reversed(all_steps()))
    for n, step in enumerate(steps):
        pct = round(100 * n / len(steps), 1)
        try:
            change = step.destroy_check(t)
            if change.action != DELETE:
                yield Progress(step.key, SKIPPED, change.summary, round(100 * (n + 1) / len(steps), 1))
                continue
            yield Progress(step.key, RUNNING, change.summary, pct)
            for event in step.destroy(t):
                yield Progress(event.step, event.state, event.message, pct, event.data)
        except EdgeConsoleError as exc:
            yield Progress(step.key, FAILED, str(exc), pct)
            raise
        yield Progress(step.key, DONE, change.summary, round(100 * (n + 1) / len(steps), 1))
    (ctx.stack_dir / "setup.json").unlink(missing_ok=True)


def outputs(ctx: Context, cfg: SetupConfig | None = None) -> dict:
    """What the stack has now: role ARNs, bucket, thing group, and the edge server's ID/state/address.

    `compile_role_arn` is the role compile passes to Neo: the compilation role under the
    least-privilege preset, the edge server's role under the runbook preset.
    """
    from actions.setup.steps import InstanceStep

    cfg = cfg or SetupConfig()
    t = Target.resolve(ctx, cfg)
    instances = [InstanceStep.describe(i) for i in InstanceStep()._find(t)]
    return {
        "role_arn": t.scope.arn("iam", f"role/{cfg.role_name}", regional=False),
        "compile_role_arn": t.scope.arn("iam", f"role/{cfg.role_name if cfg.preset == 'runbook' else cfg.compile_role}",
                                        regional=False),
        "bucket": t.bucket,
        "thing_group": cfg.thing_group_name,
        "thing_group_arn": t.scope.arn("iot", f"thinggroup/{cfg.thing_group_name}"),
        "instances": instances,
        "hourly_price_usd": C5_LARGE_PRICE_USD_PER_HOUR if cfg.instance_type == "c5.large" else None,
    }
