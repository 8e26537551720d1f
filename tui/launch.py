"""Start the console against AWS, or against a sandbox brought up with one device already running.

`edge-console --sandbox` is the whole flow from one command: start the sandbox (moto server, local
Greengrass, local Neo, MQTT broker), run the setup plan, start one local core device, compile the
fixture model with (local) Neo, package it into the two Greengrass components, deploy them to the
device's group, and open the console on the live screen once the deployment has succeeded, so
predictions are flowing when the screen appears. Every step goes through the actions layer, as an
operator's would. Progress is printed one line a step while it runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from actions.errors import ConfigError

DEMO_STACK = "demo"
DEMO_JOB = "demo-efficientnet-lite0"


def _say(message: str) -> None:
    try:
        print(f"edge-console: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass  # the terminal is gone (SSH dropped); carry on cleaning up


def _last(events, label: str):
    """Run a progress generator to its end, printing one line per finished step; return the last event."""
    from actions.progress import DONE, FAILED, SKIPPED

    last = None
    for event in events:
        last = event
        if event.state in (DONE, SKIPPED, FAILED) and event.message:
            _say(f"{label}: {event.step}: {event.message}")
    return last


def bootstrap_sandbox(state_dir: Path | None = None, device: str | None = None):
    """Start the sandbox and put the fixture model on one device; return (sandbox, ctx, facts).

    Args:
        state_dir: where the sandbox keeps its files (None: a temporary folder removed on stop).
        device: the device (thing) name; the setup plan's thing name by default.

    Returns:
        The running `Sandbox`, the `Context` on it, and a dict of what was made (group, device,
        component versions, deployment id, job name).
    """
    from actions import compile as comp
    from actions import deploy, setup
    from actions import package as pk
    from actions.context import Context
    from fixtures.models import ensure_model, sample_images
    from fixtures.sandbox import Sandbox

    _say("building the fixture model (cached after the first run)")
    model_root = ensure_model()
    images = next(iter(sample_images(model_root).values())).parent
    _say("starting the sandbox (AWS APIs, Greengrass, Neo, MQTT broker)")
    sb = Sandbox.start(state_dir)
    try:
        ctx = Context.for_sandbox(sb.endpoint_url, sb.region, stack=DEMO_STACK, state_dir=sb.state_dir / "console",
                                  sandbox_state_dir=sb.state_dir)
        cfg = setup.SetupConfig()
        _last(setup.apply(ctx, cfg), "setup")
        bucket = setup.outputs(ctx, cfg)["bucket"]
        name = device or cfg.thing_name
        _say(f"starting sandbox device {name} in group {cfg.thing_group_name}")
        sb.add_device(name, cfg.thing_group_name)
        job = comp.NeoJob(data_input_config={"input0": [1, 3, 224, 224]}, model_tar=model_root / "model.tar.gz",
                          bucket=bucket, job_name=f"{DEMO_JOB}-{int(time.time())}")
        done = _last(comp.compile_with_neo(ctx, job), "compile")
        artifact = comp.download_artifact(ctx, done.data["artifact"], ctx.stack_dir / "compiled" / job.job_name)
        published = _last(pk.package(ctx, pk.PackageSpec(artifact, bucket=bucket, images_dir=images,
                                                         python=sys.executable)), "package").data
        versions = {pk.MODEL_COMPONENT: published["model"]["version"], pk.APP_COMPONENT: published["app"]["version"]}
        deployment = deploy.create(ctx, cfg.thing_group_name, versions)
        _last(deploy.follow(ctx, deployment, timeout=180), "deploy")
        facts = {"group": cfg.thing_group_name, "device": name, "deployment": deployment, "job": job.job_name,
                 "bucket": bucket, "model_tar": str(model_root / "model.tar.gz"), "images": str(images),
                 **{f"version:{k}": v for k, v in versions.items()}}
        return sb, ctx, facts
    except BaseException:
        sb.stop()
        raise


def _exit_on_signals() -> None:
    """SIGHUP (the SSH session dropped) and SIGTERM end the program through `finally` blocks, so the
    sandbox's server, broker and device processes are stopped rather than left behind."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, handler)


def run_sandbox_console(args: argparse.Namespace) -> int:
    """`edge-console --sandbox`: bootstrap, open the console, stop the sandbox on exit."""
    from tui.app import make_app
    from tui.mqtt_link import broker_subscriber

    _exit_on_signals()
    sb, ctx, facts = bootstrap_sandbox()
    try:
        _say("ready: opening the console (q quits, Ctrl+P lists every command)")
        app = make_app(ctx, subscribe=broker_subscriber(sb.broker.host, sb.broker.port),
                       where=f"sandbox {sb.endpoint_url}", defaults=facts, sandbox=sb, start=args.screen,
                       handle_signals=True)
        app.run()
        return app.return_code or 0
    finally:
        _exit_on_signals()  # the app's loop removed its handlers when it closed
        _say("stopping the sandbox")
        sb.stop()
        _say("sandbox stopped")


def mqtt_from_args(args: argparse.Namespace):
    """The MQTT subscriber the options ask for: --mqtt HOST:PORT, or AWS IoT Core with a certificate.

    Raises:
        ConfigError: an option is malformed or a file is missing (one line, says what to pass).
    """
    from pathlib import Path

    from actions.mqtt import MqttSettings
    from tui.mqtt_link import broker_subscriber, subscriber

    for flag, path in (("--cert", args.cert), ("--key", args.key), ("--ca", args.ca)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag} {path} does not exist; pass the path of the PEM file.")
    if bool(args.cert) != bool(args.key):
        raise ConfigError("--cert and --key go together: the client certificate and its private key.")
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--mqtt {args.mqtt!r} is not HOST:PORT, e.g. --mqtt 127.0.0.1:1883.")
        if args.ca or args.cert:  # a broker with its own CA, or one that wants a client certificate
            return subscriber(MqttSettings(transport="mqtt", host=host, port=int(port), tls=True, ca_path=args.ca,
                                           cert_path=args.cert, key_path=args.key), kind="mqtt")
        return broker_subscriber(host, int(port))
    if args.iot_endpoint:
        if not (args.cert and args.key):
            raise ConfigError("--iot-endpoint needs --cert and --key: the certificate and key of a thing whose "
                              "policy allows iot:Connect, iot:Subscribe and iot:Receive.")
        settings = MqttSettings(transport="iot-core", iot_endpoint=args.iot_endpoint, port=8883,
                                cert_path=args.cert, key_path=args.key, ca_path=args.ca, protocol=5)
        return subscriber(settings, kind="iot-core")
    return None


def run_aws_console(args: argparse.Namespace) -> int:
    """`edge-console`: the console against AWS (profile and region from the usual settings)."""
    from actions.context import Context
    from actions.setup import SetupConfig
    from tui.app import make_app

    kwargs = {"stack": args.stack} if args.stack else {}
    subscribe = mqtt_from_args(args)  # first: a malformed option is reported before any AWS set-up
    ctx = Context.from_aws(args.profile, args.region, **kwargs)
    cfg = SetupConfig()
    defaults = {"group": cfg.thing_group_name, "device": cfg.thing_name}
    app = make_app(ctx, subscribe=subscribe, where=f"AWS {ctx.region} stack {ctx.stack}", defaults=defaults,
                   start=args.screen, handle_signals=True)
    app.run()
    return app.return_code or 0

