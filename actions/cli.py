"""The headless CLI: `edge-console setup|compile|package|deploy|fleet|logs|leftovers ...`.

For scripts and CI, over the same functions the console calls. Every command takes `--sandbox
URL|DIR` (the local sandbox) or `--profile/--region` (real AWS), and `--json` (one JSON object a
line: progress events, then the result). Errors are one line on stderr and a non-zero exit:
1 for a failed operation, 2 for a usage or configuration mistake, 130 when interrupted, 70
for an internal error (a bug: one line too; EDGE_CONSOLE_DEBUG=1 shows its traceback).

    edge-console setup plan --sandbox .sandbox
    edge-console setup apply --profile ops --region eu-west-1 --json
    edge-console compile --model model.tar.gz --input '{"input0": [1, 3, 224, 224]}' --out compiled/
    edge-console package --artifact compiled/ --images samples/
    edge-console deploy --group mythinggroupname --set threshold=0.5
    edge-console fleet --group mythinggroupname --details
    edge-console logs mything com.greengrass.SageMakerEdgeManager.ImageClassification --follow
    edge-console leftovers --remove
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from actions.errors import ConfigError, EdgeConsoleError
from actions.progress import FAILED, Progress

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_INTERNAL = 1, 2, 130, 70  # 70: EX_SOFTWARE


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors follow our one-line rule."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        raise ConfigError(f"{self.prog}: {message} (see --help)")


class Output:
    """Prints events and results as text or JSON lines."""

    def __init__(self, as_json: bool, stream=None):
        self.json, self.stream = as_json, stream or sys.stdout

    def event(self, event: Progress) -> None:
        if self.json:
            self.line({"event": event.to_dict()})
        else:
            pct = f"{event.percent:5.1f}% " if event.percent is not None else "       "
            print(f"{pct}{event.state:<8} {event.step:<16} {event.message}", file=self.stream, flush=True)

    def events(self, events: Iterable[Progress]) -> Progress | None:
        last = None
        for last in events:
            self.event(last)
        return last

    def result(self, value: Any, text: str | None = None) -> None:
        if self.json:
            self.line({"result": value})
        elif text is not None:
            print(text, file=self.stream, flush=True)

    def line(self, value: Any) -> None:
        print(json.dumps(value, default=str, sort_keys=True), file=self.stream, flush=True)


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where")
    where.add_argument("--sandbox", metavar="URL|DIR", default=os.environ.get("EDGE_CONSOLE_SANDBOX"),
                       help="the local sandbox: its URL or state folder (default $EDGE_CONSOLE_SANDBOX)")
    where.add_argument("--profile", help="AWS profile (real AWS)")
    where.add_argument("--region", help="AWS region (default: the profile's, or us-east-1 in the sandbox)")
    where.add_argument("--stack", default=os.environ.get("EDGE_CONSOLE_STACK", "edge-console"),
                       help="stack name; resources are tagged edge-console:stack=NAME (default edge-console)")
    where.add_argument("--state-dir", type=Path, help="local state folder (default ~/.edge-console)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")


def _context(args):
    from actions.context import Context

    if args.sandbox:
        if args.profile:
            raise ConfigError("Pass --sandbox or --profile, not both.")
        return Context.for_sandbox(args.sandbox, region=args.region or "us-east-1", stack=args.stack,
                                   state_dir=args.state_dir)
    return Context.from_aws(args.profile, args.region, stack=args.stack, state_dir=args.state_dir)


def _settings(pairs: list[str] | None, as_json: bool = True) -> dict[str, Any]:
    """KEY=VALUE pairs. With `as_json`, VALUE is read as JSON when it parses (numbers, true/false),
    else kept as a string; without, VALUE stays the text typed (the receiver converts it by type)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} must be KEY=VALUE, e.g. --set threshold=0.5.")
        if not as_json:
            out[key.strip()] = value
            continue
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"{what} is not valid JSON: {text!r}.") from None


# --- setup ---------------------------------------------------------------------------------------


def _setup_config(args):
    from actions.setup import SetupConfig

    changes: dict[str, Any] = {"preset": args.preset, "role_name": args.role_name, "bucket": args.bucket,
                               "thing_name": args.thing_name, "thing_group_name": args.thing_group,
                               "instance_type": args.instance_type}
    changes = {k: v for k, v in changes.items() if v is not None}
    # Text as typed: SetupConfig.replace converts each value by its setting's type (provision=no is
    # False, volume_gib=abc is refused), instead of JSON guessing ("no" would be a true string).
    changes.update(_settings(args.set, as_json=False))
    return SetupConfig().replace(**changes).validate()


def _print_plan(out: Output, changes, show_documents: bool) -> None:
    if out.json:
        out.result([c.to_dict() for c in changes])
        return
    marks = {"create": "+", "update": "~", "none": "=", "delete": "-", "conflict": "!"}
    for c in changes:
        print(f"{marks.get(c.action, '?')} {c.step:<16} {c.summary}")
        for line in c.details:
            print(f"      {line}")
        if show_documents:
            for name, doc in c.documents.items():
                print(f"      -- {name}:")
                for line in json.dumps(doc, indent=2).splitlines():
                    print(f"         {line}")
    counts = {a: sum(c.action == a for c in changes) for a in marks}
    print(f"plan: {counts['create']} to create, {counts['update']} to change, {counts['delete']} to delete, "
          f"{counts['none']} left alone, {counts['conflict']} in conflict")


def cmd_setup(args, out: Output) -> int:
    from actions import setup

    ctx, cfg = _context(args), _setup_config(args)
    if args.action == "plan":
        _print_plan(out, setup.plan(ctx, cfg), not args.no_documents)
        return 0
    if args.action == "apply":
        last = out.events(setup.apply(ctx, cfg))
        outputs = setup.outputs(ctx, cfg)
        lines = [f"role {outputs['role_arn']}", f"compile role {outputs['compile_role_arn']}",
                 f"bucket {outputs['bucket']}"]
        lines += [f"edge server {i['instance_id']} {i['state']} {i['public_ip'] or i['private_ip'] or ''}"
                  for i in outputs["instances"]]
        if outputs["hourly_price_usd"]:
            lines.append(f"about USD {outputs['hourly_price_usd']}/hour while the edge server runs "
                         f"({setup.PRICE_REGION} on-demand price of {setup.PRICE_DATE})")
        out.result(outputs, "\n".join(lines))
        return 0 if last is None or last.state != FAILED else EXIT_FAILED
    if args.action == "destroy":
        if not args.yes:
            _print_plan(out, setup.destroy_plan(ctx, cfg), False)
            if not out.json:
                print("nothing removed: run again with --yes to destroy")
            return 0
        out.events(setup.destroy(ctx, cfg))
        out.result({"destroyed": True}, "destroyed")
        return 0
    raise ConfigError(f"setup {args.action}: use plan, apply or destroy.")


# --- compile -------------------------------------------------------------------------------------


def cmd_compile(args, out: Output) -> int:
    from actions import compile as comp

    from actions.files import check_artifact_target

    shape = _json_arg(args.input, "--input") if args.input else None
    for target in (args.local, args.out):  # refuse a directory that is not ours before any work
        if target:
            check_artifact_target(Path(target))
    if args.local:
        if not args.model or shape is None:
            raise ConfigError("compile --local needs --model FILE and --input JSON.")
        path = comp.compile_local(Path(args.model), Path(args.local), data_input_config=shape,
                                  model_name=args.model_name)
        out.result({"artifact_dir": str(path)}, f"compiled {args.model} -> {path}")
        return 0
    ctx = _context(args)
    if args.follow:
        last = out.events(comp.follow_job(ctx, args.follow))
    else:
        if shape is None:
            raise ConfigError('compile needs --input, e.g. --input \'{"input0": [1, 3, 224, 224]}\'.')
        model_tar = Path(args.model) if args.model and not args.model.startswith("s3://") else None
        model_uri = args.model if args.model and args.model.startswith("s3://") else None
        job = comp.NeoJob(data_input_config=shape, model_tar=model_tar, model_s3_uri=model_uri,
                          framework=args.framework, framework_version=args.framework_version,
                          target_os=args.target_os, target_arch=args.target_arch,
                          target_accelerator=args.accelerator, target_device=args.target_device,
                          job_name=args.job_name, bucket=args.bucket, role_name=args.role_name,
                          max_runtime_s=args.max_runtime)
        last = out.events(comp.compile_with_neo(ctx, job))
    result = dict(last.data or {}) if last else {}
    if args.out and result.get("artifact"):
        path = comp.download_artifact(ctx, result["artifact"], Path(args.out))
        result["artifact_dir"] = str(path)
    out.result(result, f"compiled: {result.get('artifact')}" + (f" -> {result['artifact_dir']}"
                                                               if result.get("artifact_dir") else ""))
    return 0


# --- package -------------------------------------------------------------------------------------


def cmd_package(args, out: Output) -> int:
    from actions import package as pk

    ctx = _context(args)
    spec = pk.PackageSpec(artifact_dir=Path(args.artifact), model_component=args.model_component,
                          app_component=args.app_component, model_name=args.model_name, version=args.version,
                          bump=args.bump, settings=_settings(args.set),
                          images_dir=Path(args.images) if args.images else None, python=args.python,
                          command=args.client_command, bucket=args.bucket)
    last = out.events(pk.package(ctx, spec))
    data = last.data if last else {}
    out.result(data, f"{data['model']['name']} {data['model']['version']}\n{data['app']['name']} "
                     f"{data['app']['version']}")
    return 0


# --- deploy --------------------------------------------------------------------------------------


def cmd_deploy(args, out: Output) -> int:
    from actions import deploy
    from actions import package as pk

    ctx = _context(args)
    if args.cancel:
        status = deploy.cancel(ctx, args.cancel)
        out.result({"deployment_id": args.cancel, "status": status}, f"{args.cancel} {status}")
        return 0
    if args.history:
        rows = deploy.history(ctx, args.group)
        out.result(rows, "\n".join(f"{r['deploymentId']}  {r.get('deploymentStatus', ''):<10} "
                                   f"{r.get('creationTimestamp', '')}  {r.get('deploymentName', '')}" for r in rows)
                   or "no deployments")
        return 0
    if args.status:
        dep_id = args.status
    elif args.rollback:
        dep_id = deploy.rollback(ctx, args.group)
    else:
        merge = _json_arg(args.merge, "--merge") if args.merge else {}
        if not isinstance(merge, dict) or not all(isinstance(v, dict) for v in merge.values()):
            raise ConfigError('--merge must be a JSON object {"component": {...}}, e.g. --merge '
                              f'\'{{"{args.app_component}": {{"threshold": 0.5}}}}\'.')
        components: dict[str, str] = {}
        for item in args.component or []:
            name, sep, version = item.partition("=")
            if not sep:
                raise ConfigError(f"--component {item!r} must be NAME=VERSION.")
            components[name] = version
        if not components:
            for name in (args.model_component, args.app_component):
                found = pk.versions(ctx, name)
                if not found:
                    raise ConfigError(f"{name} has no published version; run `edge-console package` first.")
                components[name] = found[-1]
        settings = _settings(args.set)
        if settings:
            merge.setdefault(args.app_component, {}).update(settings)
        # Checked here, before any call: a bad value would otherwise be deployed and refused on every device.
        pk.check_client_settings(merge.get(args.app_component, {}))
        dep_id = deploy.create(ctx, args.group, components, merge=merge or None)
    if not out.json:
        print(f"deployment {dep_id}")
    if args.no_follow:
        out.result({"deployment_id": dep_id}, None)
        return 0
    last = out.events(deploy.follow(ctx, dep_id, timeout=args.timeout))
    out.result(last.data if last else {"deployment_id": dep_id}, None)
    return EXIT_FAILED if last is not None and last.state == FAILED else 0


# --- fleet, logs, leftovers ------------------------------------------------------------------------


def _age(ts) -> str:
    if ts is None:
        return "-"
    from datetime import datetime, timezone

    seconds = (datetime.now(timezone.utc) - ts).total_seconds()
    return f"{int(seconds)}s ago" if seconds < 120 else f"{int(seconds // 60)}m ago"


def cmd_fleet(args, out: Output) -> int:
    from actions import fleet

    ctx = _context(args)
    statuses = None
    if args.mqtt_host:
        from actions.mqtt import open_transport
        from actions.mqtt.base import MqttSettings

        # TLS unless the broker is on loopback (MqttSettings decides); mutual TLS with cert and key.
        transport = open_transport(MqttSettings(host=args.mqtt_host, port=args.mqtt_port, ca_path=args.mqtt_ca,
                                                cert_path=args.mqtt_cert, key_path=args.mqtt_key,
                                                client_id=f"edge-console-fleet-{os.getpid()}"), kind="mqtt")
        try:
            transport.connect()
            statuses = fleet.collect_statuses(transport, wait=args.wait)
        finally:
            transport.close()
    devices = fleet.list_fleet(ctx, args.group, details=args.details, statuses=statuses)
    if out.json:
        out.result([d.to_dict() for d in devices])
        return 0
    print(f"{'device':<28} {'greengrass':<10} {'gg seen':<9} {'client':<9} {'client seen':<11} model")
    for d in devices:
        client = d.client
        model = f"{client.model_name or ''} {client.model_version or ''}".strip() if client else ""
        print(f"{d.name:<28} {d.core_status or '-':<10} {_age(d.core_last_seen):<9} "
              f"{client.state if client else '-':<9} {_age(d.client_last_seen):<11} {model}")
        for c in d.components or ():
            print(f"    {c.name} {c.version} {c.state}")
    print(f"{len(devices)} devices")
    return 0


def cmd_logs(args, out: Output) -> int:
    from actions import logs

    ctx = _context(args)
    if args.follow:
        for line in logs.follow(ctx, args.device, args.component, lines=args.lines, instance_id=args.instance):
            out.line({"line": line}) if out.json else print(line, flush=True)
        return 0
    lines = logs.fetch(ctx, args.device, args.component, lines=args.lines, instance_id=args.instance)
    out.result(lines, "\n".join(lines))
    return 0


def cmd_leftovers(args, out: Output) -> int:
    from actions import leftovers

    ctx = _context(args)
    found = leftovers.find(ctx, buckets=args.bucket)
    if not args.remove:
        out.result([f.to_dict() for f in found], "\n".join(f"{f.kind:<18} {f.name}" for f in found)
                   + (f"\n{len(found)} leftovers; run again with --remove to delete them" if found
                      else "no Edge Manager leftovers"))
        return 0
    out.events(leftovers.remove(ctx, found))
    out.result({"removed": len(found)}, f"removed {len(found)} leftovers")
    return 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every headless subcommand."""
    from actions.package import APP_COMPONENT, MODEL_COMPONENT

    root = _Parser(prog="edge-console", description="Headless edge-console operations.")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("setup", help="IAM, S3, EC2 edge server and Greengrass env file")
    p.add_argument("action", choices=("plan", "apply", "destroy"))
    p.add_argument("--preset", choices=("least-privilege", "runbook"))
    p.add_argument("--role-name")
    p.add_argument("--bucket")
    p.add_argument("--thing-name")
    p.add_argument("--thing-group")
    p.add_argument("--instance-type")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other SetupConfig field, e.g. volume_gib=30, provision=false (true/false/yes/no/1/0)")
    p.add_argument("--no-documents", action="store_true", help="plan: hide the policy documents")
    p.add_argument("--yes", action="store_true", help="destroy: really remove (otherwise show what would go)")
    _common(p)
    p.set_defaults(run=cmd_setup)

    p = sub.add_parser("compile", help="compile a model with SageMaker Neo (or --local)")
    p.add_argument("--model", help="model.tar.gz path or s3:// URI")
    p.add_argument("--input", help='DataInputConfig JSON, e.g. \'{"input0": [1, 3, 224, 224]}\'')
    p.add_argument("--framework", default="PYTORCH")
    p.add_argument("--framework-version", default="2.0")
    p.add_argument("--target-os", default="LINUX")
    p.add_argument("--target-arch", default="X86_64")
    p.add_argument("--accelerator")
    p.add_argument("--target-device")
    p.add_argument("--job-name")
    p.add_argument("--bucket")
    p.add_argument("--role-name", help="role Neo assumes, name or ARN (default: the stack's compilation role "
                   "from setup apply)")
    p.add_argument("--max-runtime", type=int, default=900)
    p.add_argument("--model-name", help="--local: the model's name in the manifest")
    p.add_argument("--out", help="download and unpack the compiled model here")
    p.add_argument("--follow", metavar="JOB", help="follow an existing job instead of creating one")
    p.add_argument("--local", metavar="OUT_DIR", help="compile on this machine instead of Neo")
    _common(p)
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("package", help="publish the model and inference components")
    p.add_argument("--artifact", required=True, help="compiled model directory")
    p.add_argument("--model-component", default=MODEL_COMPONENT)
    p.add_argument("--app-component", default=APP_COMPONENT)
    p.add_argument("--model-name")
    p.add_argument("--version", help="publish exactly this version (default: bump the latest)")
    p.add_argument("--bump", choices=("patch", "minor", "major"), default="patch")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="edge client setting (recipe default)")
    p.add_argument("--images", help="sample images to ship with the inference component")
    p.add_argument("--python", default="python3", help="interpreter on the device (default python3)")
    p.add_argument("--client-command", help='start the client with this instead (e.g. "edge-client")')
    p.add_argument("--bucket")
    _common(p)
    p.set_defaults(run=cmd_package)

    p = sub.add_parser("deploy", help="deploy to a thing group and follow it")
    p.add_argument("--group", default="mythinggroupname")
    p.add_argument("--component", action="append", metavar="NAME=VERSION",
                   help="component to deploy (default: the latest model and inference components)")
    p.add_argument("--model-component", default=MODEL_COMPONENT)
    p.add_argument("--app-component", default=APP_COMPONENT)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="edge client setting to merge")
    p.add_argument("--merge", help='configuration merge JSON: {"component": {...}}')
    p.add_argument("--no-follow", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--cancel", metavar="DEPLOYMENT_ID")
    p.add_argument("--rollback", action="store_true", help="redeploy the group's previous deployment")
    p.add_argument("--history", action="store_true")
    p.add_argument("--status", metavar="DEPLOYMENT_ID", help="follow an existing deployment")
    _common(p)
    p.set_defaults(run=cmd_deploy)

    p = sub.add_parser("fleet", help="things, core devices and their edge clients")
    p.add_argument("--group", default="mythinggroupname")
    p.add_argument("--details", action="store_true", help="installed components and deployments too")
    p.add_argument("--mqtt-host", help="also read the clients' status messages from this broker")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--mqtt-ca", help="CA certificate of the broker (PEM)")
    p.add_argument("--mqtt-cert", help="client certificate for mutual TLS (PEM)")
    p.add_argument("--mqtt-key", help="client private key for mutual TLS (PEM)")
    p.add_argument("--wait", type=float, default=1.0, help="seconds to collect status messages")
    _common(p)
    p.set_defaults(run=cmd_fleet)

    p = sub.add_parser("logs", help="a component's log on a device")
    p.add_argument("device")
    p.add_argument("component", nargs="?", default=APP_COMPONENT, help="component name, or greengrass")
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--instance", help="AWS: the EC2 instance (default: the stack's edge server)")
    _common(p)
    p.set_defaults(run=cmd_logs)

    p = sub.add_parser("leftovers", help="find (and --remove) what Edge Manager left behind")
    p.add_argument("--bucket", action="append", help="bucket to scan for packaging outputs (repeatable)")
    p.add_argument("--remove", action="store_true")
    _common(p)
    p.set_defaults(run=cmd_leftovers)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run one headless subcommand; `argv[0]` is the subcommand. Returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        return args.run(args, Output(args.json))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("edge-console: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EdgeConsoleError as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
        message = " ".join(str(exc).split())
        if as_json:
            print(json.dumps({"error": {"type": type(exc).__name__, "message": message}}), flush=True)
        print(f"edge-console: {message}", file=sys.stderr, flush=True)
        return code
    except Exception as exc:  # a bug of ours: still one line for the operator, never a traceback
        if os.environ.get("EDGE_CONSOLE_DEBUG") == "1":
            raise
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        if as_json:
            print(json.dumps({"error": {"type": "InternalError", "message": message}}), flush=True)
        print(f"edge-console: internal error: {message} (please report this)", file=sys.stderr, flush=True)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
