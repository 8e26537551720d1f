"""Logs on real AWS go through SSM Run Command; moto runs the same API (without a real agent, so the
output is empty): we check what is sent, to which instance, and that following stops when asked."""

from __future__ import annotations

import threading

import pytest

from actions import logs
from actions.context import Context
from actions.errors import ConfigError, NotFound

from .conftest import reset


@pytest.fixture
def edge_server(moto_url, tmp_path):
    reset(moto_url)
    ctx = Context.for_sandbox(moto_url, state_dir=tmp_path, stack="logs")
    ami = ctx.client("ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]
    tags = [{"Key": "Name", "Value": "edge-server"}, {"Key": "edge-console:stack", "Value": "logs"}]
    iid = ctx.client("ec2").run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]
    return ctx, iid


def test_fetch_runs_tail_on_the_stacks_edge_server(edge_server):
    ctx, iid = edge_server
    assert logs.fetch(ctx, "mything", "com.example.App", lines=7, via="ssm") == []
    (command,) = ctx.client("ssm").list_commands()["Commands"]
    assert command["DocumentName"] == "AWS-RunShellScript" and command["InstanceIds"] == [iid]
    assert command["Parameters"]["commands"] == ["tail -n 7 /greengrass/v2/logs/com.example.App.log"]


def test_follow_polls_from_the_offset_and_stops(edge_server):
    ctx, _ = edge_server
    stop = threading.Event()
    out = []
    thread = threading.Thread(target=lambda: out.extend(
        logs.follow(ctx, "mything", "greengrass", lines=3, poll=0.1, stop=stop, via="ssm")), daemon=True)
    thread.start()
    threading.Timer(1.0, stop.set).start()
    thread.join(15)
    assert not thread.is_alive()
    sent = [c["Parameters"]["commands"][0] for c in ctx.client("ssm").list_commands()["Commands"]]
    assert any("tail -c +1 " in c for c in sent)


def test_names_are_checked_before_reaching_a_shell(edge_server):
    ctx, _ = edge_server
    with pytest.raises(ConfigError, match="component"):
        logs.fetch(ctx, "mything", "x; rm -rf /", via="ssm")
    with pytest.raises(NotFound, match="no running edge-server"):
        logs.fetch(ctx.__class__.for_sandbox(ctx.endpoint_url, stack="other", state_dir=ctx.state_dir),
                   "mything", "greengrass", via="ssm")
