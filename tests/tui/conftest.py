"""Fixtures for the console tests: a stack of our own in the session's sandbox."""

from __future__ import annotations

import uuid

import pytest

UID = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def console_stack(sandbox, tmp_path_factory):
    """(ctx, cfg): the setup plan applied with names unique to this test session."""
    from actions import setup
    from actions.context import Context

    ctx = Context.for_sandbox(sandbox.endpoint_url, sandbox.region, stack=f"tui{UID}",
                              state_dir=tmp_path_factory.mktemp("tui-state"), sandbox_state_dir=sandbox.state_dir)
    cfg = setup.SetupConfig(role_name=f"TuiRole{UID}", bucket=f"edge-console-tui-{UID}",
                            thing_group_name=f"tui-grp-{UID}", thing_name=f"tui-core-{UID}",
                            tes_role_name=f"TuiTes{UID}", tes_role_alias_name=f"TuiTesAlias{UID}",
                            instance_name=f"tui-edge-{UID}")
    list(setup.apply(ctx, cfg))
    yield ctx, cfg


@pytest.fixture(scope="session")
def console_device(sandbox, console_stack):
    """A running sandbox core device in the stack's thing group, stopped at the end of the session
    (before the sandbox itself, which it depends on)."""
    ctx, cfg = console_stack
    name = f"tui-dev-{UID}"
    sandbox.add_device(name, cfg.thing_group_name)
    yield name
    if name in sandbox.devices:
        sandbox.remove_device(name)


@pytest.fixture(scope="session")
def deployed(sandbox, console_stack, console_device, model_dir, sample_images):
    """Both components published (1.0.0) and deployed to the device; returns their versions."""
    import sys

    from actions import deploy
    from actions import package as pk

    ctx, cfg = console_stack
    images = next(iter(sample_images.values())).parent
    last = list(pk.package(ctx, pk.PackageSpec(model_dir, bucket=cfg.bucket, images_dir=images,
                                              python=sys.executable)))[-1].data
    versions = {pk.MODEL_COMPONENT: last["model"]["version"], pk.APP_COMPONENT: last["app"]["version"]}
    dep = deploy.create(ctx, cfg.thing_group_name, versions)
    assert list(deploy.follow(ctx, dep, timeout=120))[-1].state == "done"
    return versions, dep


def console_app(sandbox, ctx, cfg, device=None, **kwargs):
    """The console App on the sandbox and its broker, as `edge-console --sandbox` builds it."""
    from tui.app import make_app
    from tui.mqtt_link import broker_subscriber

    defaults = {"group": cfg.thing_group_name, "bucket": cfg.bucket, "role": cfg.compile_role}
    if device:
        defaults["device"] = device
    defaults.update(kwargs.pop("defaults", {}))
    return make_app(ctx, subscribe=broker_subscriber(sandbox.broker.host, sandbox.broker.port),
                    defaults=defaults, **kwargs)
