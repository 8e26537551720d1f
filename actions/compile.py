"""Compile a model for the edge: a SageMaker Neo compilation job, or the local compiler.

    for event in compile.compile_with_neo(ctx, NeoJob(model_tar=Path("model.tar.gz"), ...)):
        ...                                   # upload %, job status, then the artifact's S3 URI
    compile.compile_local(Path("model.tar.gz"), Path("out"), data_input_config={"input0": [1, 3, 224, 224]})

Neo takes the chapter's PyTorch layout (a model.tar.gz with the model at its root) and a
DataInputConfig; its output lands at `<S3OutputLocation>/<model>-<target>.tar.gz`.

The job runs as the stack's compilation role (`compile_role_arn`): the role setup made for Neo
alone under the least-privilege preset, or the edge server's role under the runbook preset, as
`setup.json` records it; `NeoJob.role_name` picks another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import re
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from actions.aws import aws_call, error_code
from actions.context import Context
from actions.errors import AccessDenied, CompileError, ConfigError, NotFound
from actions.files import check_artifact_target, replace_dir
from actions.progress import DONE, FAILED, RUNNING, Progress

FRAMEWORKS = ("PYTORCH", "TENSORFLOW", "TFLITE", "ONNX", "KERAS", "MXNET", "XGBOOST", "DARKNET")
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Empty: the stack's compilation role (compile_role_arn). A text default, for forms that show it.
DEFAULT_ROLE = ""
IAM_ROLE_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$")
IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]{1,64}$")
# Where each phase of a job sits on the overall bar (upload 0-20 %, job 20-100 %).
JOB_PERCENT = {"STARTING": 25.0, "INPROGRESS": 50.0}


@dataclass(frozen=True)
class NeoJob:
    """One Neo compilation job, as the chapter's notebook creates it.

    Attributes:
        model_tar: a local model.tar.gz to upload (or give `model_s3_uri`).
        model_s3_uri: a model.tar.gz already in S3.
        data_input_config: input name -> shape, e.g. {"input0": [1, 3, 224, 224]}.
        framework, framework_version: e.g. PYTORCH and 2.0 (Neo's supported versions).
        target_os, target_arch, target_accelerator: TargetPlatform (the chapter: LINUX / X86_64).
        target_device: a TargetDevice such as jetson_nano instead of a platform.
        job_name: defaults to `<stack>-<model>-<UTC time>`.
        bucket: defaults to the setup bucket `ec2-scripts-<region>-<account>`.
        role_name: the role Neo assumes, a name or an ARN; None or "" (default): the stack's
            compilation role (see `compile_role_arn`).
        max_runtime_s: StoppingCondition.MaxRuntimeInSeconds (the chapter's 900).
    """

    data_input_config: dict[str, list[int]]
    model_tar: Path | None = None
    model_s3_uri: str | None = None
    framework: str = "PYTORCH"
    framework_version: str = "2.0"
    target_os: str = "LINUX"
    target_arch: str = "X86_64"
    target_accelerator: str | None = None
    target_device: str | None = None
    job_name: str | None = None
    bucket: str | None = None
    role_name: str | None = None
    max_runtime_s: int = 900
    tags: dict[str, str] = field(default_factory=dict)

    def validate(self) -> NeoJob:
        """Check the request before any call; return self. Raises ConfigError naming the setting."""
        if (self.model_tar is None) == (self.model_s3_uri is None):
            raise ConfigError("Give exactly one model: a local model.tar.gz path or an s3:// URI.")
        if self.model_tar is not None and not Path(self.model_tar).is_file():
            raise ConfigError(f"The model archive {self.model_tar} does not exist; pass the path of a model.tar.gz.")
        if self.model_s3_uri is not None and not self.model_s3_uri.startswith("s3://"):
            raise ConfigError(f"model_s3_uri {self.model_s3_uri!r} must start with s3://.")
        if self.framework.upper() not in FRAMEWORKS:
            raise ConfigError(f"framework {self.framework!r} is not one Neo compiles; use one of {', '.join(FRAMEWORKS)}.")
        shapes = self.data_input_config
        if not isinstance(shapes, dict) or not shapes or not all(
                isinstance(v, list) and v and all(isinstance(d, int) and d > 0 for d in v) for v in shapes.values()):
            raise ConfigError('data_input_config must map input names to shapes, e.g. {"input0": [1, 3, 224, 224]}.')
        if self.job_name is not None and not JOB_NAME.match(self.job_name):
            raise ConfigError(f"job_name {self.job_name!r} is not valid: 1-63 letters, digits and '-', "
                              "starting and ending with a letter or digit.")
        if self.target_device and (self.target_accelerator or (self.target_os, self.target_arch) != ("LINUX", "X86_64")):
            raise ConfigError("Give a target_device or a target platform (os/arch/accelerator), not both.")
        if self.role_name and not (IAM_ROLE_NAME.match(self.role_name) or IAM_ROLE_ARN.match(self.role_name)):
            raise ConfigError(f"role_name {self.role_name!r} is neither an IAM role name nor a role ARN; leave it "
                              "empty for the stack's compilation role.")
        return self


def _trusts_sagemaker(role: dict[str, Any]) -> bool:
    doc = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(doc, str):
        from urllib.parse import unquote

        doc = json.loads(unquote(doc))
    statements = doc.get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        services = (st.get("Principal") or {}).get("Service", []) if isinstance(st.get("Principal"), dict) else []
        services = [services] if isinstance(services, str) else services
        if st.get("Effect") == "Allow" and "sagemaker.amazonaws.com" in services:
            return True
    return False


def compile_role_arn(ctx: Context, role: str | None = None) -> str:
    """The ARN of the role a compilation job runs as.

    `role` (a name or an ARN) when given; else the stack's: `compile_role_arn` from the outputs
    setup wrote to `<stack dir>/setup.json`; else, when that file is not on this machine, the
    default-named compilation role or edge server role, if it carries this stack's tag and trusts
    sagemaker.amazonaws.com (after the split, the edge server's role no longer does).

    Raises:
        NotFound: the stack has no role Neo may assume (one line: run setup apply, or pass a role).
        AwsError subclasses: reading IAM failed for another reason than access denied.
    """
    if role:
        if role.startswith("arn:"):
            return role
        return f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{role}"
    path = ctx.stack_dir / "setup.json"
    try:
        found = json.loads(path.read_text()).get("outputs", {}).get("compile_role_arn")
    except (OSError, ValueError, AttributeError):
        found = None
    if found:
        return found
    from actions.setup.config import SetupConfig

    defaults, iam, denied = SetupConfig(), ctx.client("iam"), False
    for name in (defaults.compile_role, defaults.role_name):
        try:
            with aws_call(f"read the IAM role {name}"):
                try:
                    role_doc = iam.get_role(RoleName=name)["Role"]
                except Exception as exc:
                    if error_code(exc) == "NoSuchEntity":
                        continue
                    raise
        except AccessDenied:
            denied = True
            continue
        key, value = ctx.tag
        tags = role_doc.get("Tags")
        if tags is None:
            with aws_call(f"read the tags of the IAM role {name}"):
                tags = iam.list_role_tags(RoleName=name).get("Tags", [])
        if {"Key": key, "Value": value} in tags and _trusts_sagemaker(role_doc):
            return role_doc["Arn"]
    why = " (reading IAM was denied)" if denied else ""
    raise NotFound(f"Stack {ctx.stack} has no compilation role{why}: run `edge-console setup apply --stack "
                   f"{ctx.stack}` (it makes one trusted by SageMaker only), or pass --role-name with a role "
                   "SageMaker may assume.")


def default_job_name(ctx: Context, model: str) -> str:
    """`<stack>-<model>-<UTC yyyymmddHHMMSS>`, cut to Neo's 63 characters."""
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", model).strip("-") or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    base = re.sub(r"[^a-zA-Z0-9]+", "-", f"{ctx.stack}-{stem}")[: 62 - len(stamp)].strip("-")
    return f"{base}-{stamp}"


def _bucket(ctx: Context, bucket: str | None) -> str:
    return bucket or f"ec2-scripts-{ctx.region}-{ctx.account_id}"


def upload_model(ctx: Context, model_tar: Path, *, bucket: str | None = None) -> Iterator[Progress]:
    """Upload a model.tar.gz to `s3://<bucket>/models/<sha256 prefix>/model.tar.gz`, with progress.

    The key holds the content hash, so uploading the same model twice makes one upload.

    Yields:
        Progress("upload", ...) events; the last one is DONE with data["uri"].
    """
    model_tar = Path(model_tar)
    bucket = _bucket(ctx, bucket)
    digest = hashlib.sha256()
    with model_tar.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    key = f"models/{digest.hexdigest()[:16]}/{model_tar.name}"
    uri = f"s3://{bucket}/{key}"
    s3, size = ctx.client("s3"), model_tar.stat().st_size
    with aws_call(f"check {uri}"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if head.get("ContentLength") == size:
                yield Progress("upload", DONE, f"{uri} is already there", 20.0, {"uri": uri})
                return
        except Exception as exc:
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise
    sent: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            s3.upload_file(str(model_tar), bucket, key, Callback=sent.put,
                           ExtraArgs={"Metadata": {"sha256": digest.hexdigest()}})
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)
        finally:
            sent.put(None)

    worker = threading.Thread(target=upload, name="upload-model", daemon=True)
    worker.start()
    done, shown = 0, -1
    while (chunk := sent.get()) is not None:
        done += chunk
        step = int(20 * done / max(size, 1))  # one event per 5 % of the file, not one per chunk
        if step > shown:
            shown = step
            yield Progress("upload", RUNNING, f"uploading {model_tar.name} ({done * 100 // max(size, 1)} %)",
                           round(20.0 * done / max(size, 1), 1), {"bytes": done, "size": size})
    worker.join()
    if failure:
        with aws_call(f"upload {model_tar} to {uri}"):
            raise failure[0]
    yield Progress("upload", DONE, f"uploaded {uri}", 20.0, {"uri": uri, "bytes": size})


def start_job(ctx: Context, job: NeoJob, model_s3_uri: str) -> str:
    """Create the compilation job; return its name. Raises typed AWS errors (NameConflict for a taken name)."""
    bucket = _bucket(ctx, job.bucket)
    source = Path(job.model_tar).name if job.model_tar else model_s3_uri.rsplit("/", 1)[-1]
    name = job.job_name or default_job_name(ctx, source.split(".")[0])
    output: dict[str, Any] = {"S3OutputLocation": f"s3://{bucket}/compiled/{name}/"}
    if job.target_device:
        output["TargetDevice"] = job.target_device
    else:
        output["TargetPlatform"] = {"Os": job.target_os, "Arch": job.target_arch}
        if job.target_accelerator:
            output["TargetPlatform"]["Accelerator"] = job.target_accelerator
    key, value = ctx.tag
    tags = [{"Key": key, "Value": value}] + [{"Key": k, "Value": v} for k, v in job.tags.items()]
    role_arn = compile_role_arn(ctx, job.role_name)
    with aws_call(f"create the compilation job {name}"):
        ctx.client("sagemaker").create_compilation_job(
            CompilationJobName=name,
            RoleArn=role_arn,
            InputConfig={"S3Uri": model_s3_uri, "DataInputConfig": json.dumps(job.data_input_config),
                         "Framework": job.framework.upper(), "FrameworkVersion": job.framework_version},
            OutputConfig=output,
            StoppingCondition={"MaxRuntimeInSeconds": job.max_runtime_s},
            Tags=tags,
        )
    return name


def follow_job(ctx: Context, job_name: str, *, poll: float | None = None,
               timeout: float | None = None) -> Iterator[Progress]:
    """Follow a compilation job until it ends, yielding each status change (and a heartbeat).

    Yields:
        Progress("compile", ...); the last is DONE with data["artifact"] (the S3 URI of the output).

    Raises:
        CompileError: the job FAILED (the message carries Neo's FailureReason) or was STOPPED.
    """
    poll = poll if poll is not None else (0.5 if ctx.is_sandbox else 15.0)
    sm, started, last = ctx.client("sagemaker"), time.monotonic(), None
    while True:
        with aws_call(f"read the compilation job {job_name}"):
            desc = sm.describe_compilation_job(CompilationJobName=job_name)
        status, elapsed = desc["CompilationJobStatus"], int(time.monotonic() - started)
        if status == "COMPLETED":
            artifact = desc["ModelArtifacts"]["S3ModelArtifacts"]
            yield Progress("compile", DONE, f"{job_name} COMPLETED: {artifact}", 100.0,
                           {"job": job_name, "status": status, "artifact": artifact})
            return
        if status in ("FAILED", "STOPPED"):
            reason = desc.get("FailureReason") or "no reason given"
            yield Progress("compile", FAILED, f"{job_name} {status}: {reason}", None,
                           {"job": job_name, "status": status, "reason": reason})
            raise CompileError(f"Compilation job {job_name} {status.lower()}: {reason} "
                               "Fix the model or the job's settings and compile again.")
        if status != last or elapsed % 30 < poll:
            yield Progress("compile", RUNNING, f"{job_name} {status} ({elapsed} s)", JOB_PERCENT.get(status),
                           {"job": job_name, "status": status})
            last = status
        if timeout is not None and elapsed > timeout:
            raise CompileError(f"Compilation job {job_name} is still {status} after {elapsed} s; "
                               "follow it later with `edge-console compile --follow JOB`, or stop it.")
        time.sleep(poll)


def compile_with_neo(ctx: Context, job: NeoJob, *, poll: float | None = None) -> Iterator[Progress]:
    """Upload the model (if local), create the Neo job and follow it to the end.

    Yields:
        upload events, a "compile" event naming the job, its status changes, and a final DONE event
        with data["artifact"] = the compiled model's S3 URI.

    Raises:
        ConfigError: an invalid request. NotFound: the stack has no compilation role (before the upload).
        CompileError: the job failed (with FailureReason). AwsError subclasses: a call failed.
    """
    job.validate()
    # The role first: a stack without one fails in a moment, not after the upload.
    job = dataclasses.replace(job, role_name=compile_role_arn(ctx, job.role_name))
    uri = job.model_s3_uri
    if job.model_tar is not None:
        for event in upload_model(ctx, Path(job.model_tar), bucket=job.bucket):
            yield event
            if event.state == DONE:
                uri = event.data["uri"]
    name = start_job(ctx, job, uri)
    yield Progress("compile", RUNNING, f"created compilation job {name} (role {job.role_name.rsplit('/', 1)[-1]})",
                   20.0, {"job": name, "input": uri, "role_arn": job.role_name})
    yield from follow_job(ctx, name, poll=poll)


def stop_job(ctx: Context, job_name: str) -> None:
    """Stop a running compilation job."""
    with aws_call(f"stop the compilation job {job_name}"):
        ctx.client("sagemaker").stop_compilation_job(CompilationJobName=job_name)


def list_jobs(ctx: Context, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest compilation jobs of the account (name, status, times, target)."""
    with aws_call("list compilation jobs"):
        rows = ctx.client("sagemaker").list_compilation_jobs(MaxResults=min(limit, 100), SortBy="CreationTime",
                                                             SortOrder="Descending")["CompilationJobSummaries"]
    return rows


def download_artifact(ctx: Context, s3_uri: str, out_dir: Path) -> Path:
    """Fetch a compiled model (a tar.gz in S3) and unpack it into `out_dir`, whole or not at all.

    An existing `out_dir` is replaced whole only when it is empty or a model artifact itself.

    Raises:
        NotFound: no such object. CompileError: the archive is not a safe tar.gz.
        ConfigError: `out_dir` exists and is not a model artifact.
    """
    if not s3_uri.startswith("s3://"):
        raise ConfigError(f"{s3_uri!r} is not an s3:// URI.")
    bucket, _, key = s3_uri[5:].partition("/")
    out_dir = Path(out_dir)
    check_artifact_target(out_dir)  # before downloading; replace_dir checks again
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        archive = Path(tmp) / "artifact.tar.gz"
        with aws_call(f"download {s3_uri}"):
            ctx.client("s3").download_file(bucket, key, str(archive))
        unpacked = Path(tmp) / "unpacked"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")  # refuses absolute paths, links out, devices
        except (tarfile.TarError, OSError) as exc:
            raise CompileError(f"{s3_uri} is not a readable tar.gz ({exc}); compile the model again.") from None
        # Neo output is flat; the sandbox's may hold one directory: use it as the root.
        entries = list(unpacked.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        replace_dir(root, out_dir)
    return out_dir


def compile_local(model_tar: Path, out_dir: Path, *, data_input_config: dict[str, list[int]],
                  model_name: str | None = None, model_version: str | None = None,
                  calibration_images=None) -> Path:
    """Compile on this machine with the compiler the sandbox's Neo uses (an ONNX Runtime artifact).

    For operators who skip Neo. Same input as Neo (a PyTorch model.tar.gz and DataInputConfig).

    Raises:
        ConfigError: the archive does not exist. CompileError: the model cannot be compiled.
    """
    if not Path(model_tar).is_file():
        raise ConfigError(f"The model archive {model_tar} does not exist; pass the path of a model.tar.gz.")
    from actions.compiler import compile_pytorch

    kwargs: dict[str, Any] = {"data_input_config": data_input_config, "calibration_images": calibration_images}
    if model_name:
        kwargs["model_name"] = model_name
    if model_version:
        kwargs["model_version"] = model_version
    return compile_pytorch(Path(model_tar), Path(out_dir), **kwargs)
