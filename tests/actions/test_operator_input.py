"""What an operator types reaches AWS and the edge server only as the type and form it must have.

Every case runs the real CLI (or the function the CLI calls) against the moto server; a mistake is
one line on stderr with a non-zero exit, never a traceback, never a half-done change.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actions.cli import main
from actions.errors import ConfigError
from actions.setup.config import SCRIPT_NAMES, SetupConfig, parse_env, render_env, script, user_data

from .conftest import reset


def _plan(moto_url, tmp_path, capsys, *sets: str) -> dict[str, dict]:
    """`setup plan --json` with `--set` pairs: {step: change}."""
    argv = ["setup", "plan", "--sandbox", moto_url, "--state-dir", str(tmp_path), "--json"]
    for pair in sets:
        argv += ["--set", pair]
    assert main(argv) == 0, capsys.readouterr().err
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    return {c["step"]: c for c in line["result"]}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- 1. --set values take their setting's type ------------------------------------------------------


@pytest.mark.parametrize("word", ["no", "NO", "false", "False", "0"])
def test_set_no_turns_dev_tools_and_provisioning_off(moto_url, tmp_path, capsys, word):
    reset(moto_url)
    plan = _plan(moto_url, tmp_path, capsys, f"deploy_dev_tools={word}", f"provision={word}")
    env = plan["scripts"]["details"]
    assert "  DEPLOY_DEV_TOOLS=false" in env and "  PROVISION=false" in env
    assert "DeployDevTools" not in json.dumps(plan["iam-role"]["documents"])


def test_set_yes_turns_dev_tools_on(moto_url, tmp_path, capsys):
    # The other side of the conversion: the words that mean true still do.
    reset(moto_url)
    plan = _plan(moto_url, tmp_path, capsys, "deploy_dev_tools=Yes")
    assert "  DEPLOY_DEV_TOOLS=true" in plan["scripts"]["details"]
    assert "DeployDevTools" in json.dumps(plan["iam-role"]["documents"])


def test_set_text_settings_stay_text(moto_url, tmp_path, capsys):
    # `--set thing_name=5` is the name "5" (a text setting), not the number 5 that JSON would make.
    reset(moto_url)
    plan = _plan(moto_url, tmp_path, capsys, "thing_name=5", "volume_gib=30")
    assert "  THING_NAME=5" in plan["scripts"]["details"]


@pytest.mark.parametrize("pair, words", [
    ("deploy_dev_tools=maybe", "deploy_dev_tools 'maybe' must be true or false"),
    ("provision=", "provision '' must be true or false"),
    ("volume_gib=abc", "volume_gib 'abc' must be a whole number"),
    ("volume_gib=20.5", "volume_gib '20.5' must be a whole number"),
    ("volume_gib=" + "9" * 5000, "...' is out of range"),
    ("volume_gib=99999", "volume_gib 99999 is out of range"),
    ("teardown_timeout_s=soon", "teardown_timeout_s 'soon' must be a number"),
    ("bucket=5", "bucket '5' is not a valid S3 bucket name"),
    ("thing_name=Big", "thing_name 'Big' is not valid"),
    ("thing=x", "valid: ami_parameter, bucket"),
])
def test_bad_set_values_are_one_line_usage_errors(moto_url, tmp_path, capsys, pair, words):
    reset(moto_url)
    assert main(["setup", "plan", "--set", pair, "--sandbox", moto_url, "--state-dir", str(tmp_path)]) == 2
    assert words in _one_line_error(capsys)


def test_typed_values_are_converted_or_refused():
    cfg = SetupConfig().replace(volume_gib="30", provision="no", deploy_dev_tools=1, bucket="", teardown_timeout_s="5")
    assert (cfg.volume_gib, cfg.provision, cfg.deploy_dev_tools, cfg.bucket, cfg.teardown_timeout_s) == \
        (30, False, True, None, 5.0)
    with pytest.raises(ConfigError, match="thing_name 5 must be text"):
        SetupConfig().replace(thing_name=5)
    with pytest.raises(ConfigError, match="deploy_dev_tools 2 must be true or false"):
        SetupConfig().replace(deploy_dev_tools=2)
    # Built directly (not through replace), a wrong type is still caught before anything is planned.
    with pytest.raises(ConfigError, match="deploy_dev_tools 'no'"):
        SetupConfig(deploy_dev_tools="no").validate()


# --- 2. nothing reaches root's shell but allow-listed words ------------------------------------------


@pytest.mark.parametrize("change, field", [
    ({"ggc_root_path": "/g;reboot"}, "ggc_root_path"),
    ({"ggc_root_path": "/g\treboot"}, "ggc_root_path"),
    ({"ggc_root_path": "/g|reboot"}, "ggc_root_path"),
    ({"ggc_root_path": "relative/path"}, "ggc_root_path"),
    ({"ggc_root_path": "/greengrass/../etc"}, "ggc_root_path"),
    ({"greengrass_image": "img;reboot"}, "greengrass_image"),
    ({"greengrass_image": "img $(reboot)"}, "greengrass_image"),
    ({"greengrass_image": "img&&reboot"}, "greengrass_image"),
    ({"component_default_user": "ggc_user:ggc_group;reboot"}, "component_default_user"),
    ({"component_default_user": "root"}, "component_default_user"),
    ({"tes_role_name": "role>x"}, "tes_role_name"),
    ({"tes_role_alias_name": "alias(x)"}, "tes_role_alias_name"),
])
def test_shell_metacharacters_are_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=rf"^{field} .* (must be|is not a valid)"):
        render_env(SetupConfig().replace(**change), "us-east-1")
    with pytest.raises(ConfigError, match=field):
        user_data(SetupConfig().replace(**change), "ec2-scripts-us-east-1-123456789012")


def test_an_injected_region_or_bucket_is_refused():
    with pytest.raises(ConfigError, match="region"):
        render_env(SetupConfig(), "us-east-1;reboot")
    with pytest.raises(ConfigError, match="bucket"):
        user_data(SetupConfig(), "b;reboot")


def test_setup_plan_refuses_an_injected_root_path(moto_url, tmp_path, capsys):
    reset(moto_url)
    assert main(["setup", "plan", "--set", "ggc_root_path=/g;reboot", "--sandbox", moto_url,
                 "--state-dir", str(tmp_path)]) == 2
    assert "ggc_root_path '/g;reboot' must be an absolute path" in _one_line_error(capsys)


def test_the_scripts_source_the_env_file_and_see_the_values_set(tmp_path):
    # Unusual but allowed values go through bash (the scripts `source` env) exactly as set.
    cfg = SetupConfig().replace(ggc_root_path="/opt/gg-root_2.v2", component_default_user="edge_1:edge-grp",
                                greengrass_image="registry.example.com:5000/team/gg@sha256:abc123",
                                tes_role_name="Tes+Role=1,x@y", deploy_dev_tools="yes")
    (tmp_path / "env").write_text(render_env(cfg, "eu-central-1"))
    for name in SCRIPT_NAMES:
        (tmp_path / name).write_text(script(name))
        assert subprocess.run(["bash", "-n", str(tmp_path / name)]).returncode == 0
    shown = subprocess.run(["bash", "-c", 'set -euo pipefail; source "$1/env"; '
                            'printf "%s|%s|%s|%s" "$GGC_ROOT_PATH" "$COMPONENT_DEFAULT_USER" "$TES_ROLE_NAME" '
                            '"$DEPLOY_DEV_TOOLS"', "_", str(tmp_path)], capture_output=True, text=True, check=True)
    assert shown.stdout == "/opt/gg-root_2.v2|edge_1:edge-grp|Tes+Role=1,x@y|true"
    # docker --env-file reads the lines literally: no quotes may appear around a value.
    assert parse_env(render_env(cfg, "eu-central-1"))["GGC_ROOT_PATH"] == "/opt/gg-root_2.v2"
    data = user_data(cfg, "ec2-scripts-eu-central-1-123456789012")
    (tmp_path / "user-data").write_text(data)
    assert subprocess.run(["bash", "-n", str(tmp_path / "user-data")]).returncode == 0
    assert "GREENGRASS_IMAGE=registry.example.com:5000/team/gg@sha256:abc123 bash" in data


# --- 3. no traceback for any mistake ------------------------------------------------------------------


@pytest.mark.parametrize("pair, words", [
    ("threshold=abc", "threshold 'abc' must be a number between 0 and 1"),
    ("threshold=null", "threshold None must be a number between 0 and 1"),
    ("threshold=true", "threshold True must be a number between 0 and 1"),
    ("threshold=NaN", "threshold nan must be a number between 0 and 1"),
    ("threshold=1.5", "threshold 1.5 must be a number between 0 and 1"),
    ("top_k=x", "top_k 'x' must be a whole number"),
    ("top_k=2.5", "top_k 2.5 must be a whole number"),
    ("top_k=0", "top_k 0 must be a whole number, at least 1"),
    ("interval=-1", "interval -1 must be a number of seconds"),
    ("loop=sometimes", "loop 'sometimes' must be true or false"),
])
def test_package_bad_settings_are_one_line_usage_errors(moto_url, model_dir, tmp_path, capsys, pair, words):
    reset(moto_url)
    assert main(["package", "--artifact", str(model_dir), "--set", "source=/data/images", "--set", pair,
                 "--sandbox", moto_url, "--state-dir", str(tmp_path)]) == 2
    assert words in _one_line_error(capsys)


def test_an_internal_error_is_one_line_with_exit_70(tmp_path, capsys, monkeypatch):
    from actions import cli

    def broken(args, out):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(cli, "cmd_leftovers", broken)  # a bug cannot be made for real: stand one in
    monkeypatch.delenv("EDGE_CONSOLE_DEBUG", raising=False)
    assert main(["leftovers", "--state-dir", str(tmp_path)]) == 70
    err = _one_line_error(capsys)
    assert err == "edge-console: internal error: KeyError: 'a bug of ours' (please report this)\n"
    assert main(["leftovers", "--state-dir", str(tmp_path), "--json"]) == 70
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "InternalError"
    monkeypatch.setenv("EDGE_CONSOLE_DEBUG", "1")
    with pytest.raises(KeyError, match="a bug of ours"):
        main(["leftovers", "--state-dir", str(tmp_path)])


def test_a_bad_set_value_through_the_real_entry_point_has_no_traceback(moto_url, tmp_path):
    reset(moto_url)
    proc = subprocess.run([sys.executable, "-m", "tui.main", "setup", "plan", "--set", "volume_gib=abc",
                           "--sandbox", moto_url, "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "edge-console: volume_gib 'abc' must be a whole number, e.g. volume_gib=20."


# --- 4. an output directory is replaced only when it is a model artifact ----------------------------


def _precious(root):
    """A directory an operator would not want deleted (think `--out ~`): files and a subfolder."""
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    (root / "projects").mkdir()
    (root / "projects" / "thesis.tex").write_text("years of work")
    return root


def _survived(root) -> bool:
    return (root / "notes.txt").read_text() == "keep me" and \
        (root / "projects" / "thesis.tex").read_text() == "years of work"


def _artifact_tar(path, files: dict[str, bytes]):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_compile_local_refuses_a_directory_that_is_not_an_artifact(model_tar, tmp_path, capsys):
    home = _precious(tmp_path / "home")
    assert main(["compile", "--local", str(home), "--model", str(model_tar), "--input",
                 '{"input0": [1, 3, 224, 224]}']) == 2
    assert f"{home} exists and is not a model artifact; choose an empty or new directory" in _one_line_error(capsys)
    assert _survived(home) and sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    from actions.compiler import compile_pytorch

    with pytest.raises(ConfigError, match="not a model artifact"):
        compile_pytorch(model_tar, home, data_input_config={"input0": [1, 3, 224, 224]})
    assert _survived(home)


@pytest.mark.parametrize("extra", [[], ["--follow", "some-job"]])
def test_compile_out_refuses_a_directory_that_is_not_an_artifact_before_any_call(moto_url, tmp_path, capsys, extra):
    home = _precious(tmp_path / "home")
    argv = ["compile", "--out", str(home), "--input", '{"input0": [1, 3, 224, 224]}', *extra,
            "--sandbox", "http://127.0.0.1:9", "--state-dir", str(tmp_path / "state")]  # nothing listens on :9
    assert main(argv) == 2
    assert "exists and is not a model artifact" in _one_line_error(capsys)
    assert _survived(home)


def test_download_artifact_replaces_only_an_artifact_and_whole(ctx, tmp_path):
    from actions import compile as comp

    s3 = ctx.client("s3")
    s3.create_bucket(Bucket="artifacts")
    tar = _artifact_tar(tmp_path / "a.tar.gz", {"manifest.json": b"{}", "model.onnx": b"new"})
    s3.upload_file(str(tar), "artifacts", "compiled/a.tar.gz")
    uri = "s3://artifacts/compiled/a.tar.gz"

    home = _precious(tmp_path / "home")
    with pytest.raises(ConfigError, match="exists and is not a model artifact"):
        comp.download_artifact(ctx, uri, home)
    assert _survived(home)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a model artifact"):
        comp.download_artifact(ctx, uri, a_file)

    # An earlier artifact (ours or Neo's) is replaced whole: its stale files go, nothing is left beside it.
    for marker in ("manifest.json", "compiled.so"):
        old = tmp_path / f"old-{marker}"
        old.mkdir()
        (old / marker).write_bytes(b"old")
        (old / "stale.bin").write_bytes(b"stale")
        assert comp.download_artifact(ctx, uri, old) == old
        assert sorted(p.name for p in old.iterdir()) == ["manifest.json", "model.onnx"]
        assert (old / "model.onnx").read_bytes() == b"new"
    empty = tmp_path / "empty"
    empty.mkdir()
    comp.download_artifact(ctx, uri, empty)
    assert (empty / "model.onnx").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "empty", "file", "home",
                                                          "old-compiled.so", "old-manifest.json"]


# --- 5. private keys: a fresh file, 0600 from its first byte, whatever was left beside them ----------


def _plant_stale_tmp(target, leak):
    """What an earlier crash (or another user) may leave: `<name>.tmp`, world-readable, and a symlink."""
    stale = target.with_name(target.name + ".tmp")
    leak.write_text("not a key")
    leak.chmod(0o644)
    stale.symlink_to(leak)  # O_CREAT|O_TRUNC without O_EXCL follows it and writes the key there


def test_broker_ca_keys_ignore_a_stale_tmp_file(tmp_path):
    from fixtures.broker import _CertAuthority

    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    _plant_stale_tmp(ca_dir / "ca.key", tmp_path / "leak-ca")
    _plant_stale_tmp(ca_dir / "client-1.key", tmp_path / "leak-client")
    ca = _CertAuthority(ca_dir)
    _, key = ca.issue("client-1", server=False)
    for path in (ca_dir / "ca.key", key):
        assert path.stat().st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in path.read_bytes()
    assert (tmp_path / "leak-ca").read_text() == "not a key" and (tmp_path / "leak-client").read_text() == "not a key"
    assert (ca_dir / "ca.pem").stat().st_mode & 0o777 == 0o644


def test_sandbox_device_key_ignores_a_stale_tmp_file(tmp_path):
    from fixtures.sandbox.device import _write_file

    key = tmp_path / "private.pem.key"
    _plant_stale_tmp(key, tmp_path / "leak")
    _write_file(key, "-----BEGIN PRIVATE KEY-----\nsecret\n", 0o600)
    assert key.stat().st_mode & 0o777 == 0o600 and "secret" in key.read_text()
    assert (tmp_path / "leak").read_text() == "not a key"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


# --- 6. hints name commands that exist ----------------------------------------------------------------


def test_a_missing_sandbox_folder_points_to_sandbox_up(tmp_path, capsys):
    from fixtures.sandbox.cli import build_parser as sandbox_parser

    assert main(["fleet", "--sandbox", str(tmp_path / "nowhere"), "--state-dir", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "start one with `edge-console sandbox up`" in err
    sandbox_parser().parse_args(["up", "--port", "0"])  # the command the hint names exists


# --- 7. deploy --merge takes only {"component": {...}} ------------------------------------------------


@pytest.mark.parametrize("merge", ['"str"', "[1, 2]", "5", '{"com.example.App": 5}', '{"com.example.App": "x"}'])
def test_deploy_merge_must_be_an_object_of_objects(moto_url, tmp_path, capsys, merge):
    reset(moto_url)
    assert main(["deploy", "--merge", merge, "--component", "com.example.App=1.0.0", "--no-follow",
                 "--sandbox", moto_url, "--state-dir", str(tmp_path)]) == 2
    assert '--merge must be a JSON object {"component": {...}}' in _one_line_error(capsys)


def test_deploy_create_refuses_a_merge_or_reset_of_the_wrong_shape(ctx, calls):
    from actions import deploy

    calls.attach(ctx)
    with pytest.raises(ConfigError, match=r'must be a JSON object \{"component": \{\.\.\.\}\}'):
        deploy.create(ctx, "g", {"com.example.App": "1.0.0"}, merge="str")
    with pytest.raises(ConfigError, match="list of JSON pointers"):
        deploy.create(ctx, "g", {"com.example.App": "1.0.0"}, reset={"com.example.App": "/threshold"})
    assert calls.names == []  # refused before any AWS call


@pytest.mark.parametrize("setting, expected", [
    ("threshold=abc", "threshold 'abc' must be a number between 0 and 1"),
    ("top_k=0", "top_k 0 must be a whole number, at least 1"),
    ("loop=maybe", "loop 'maybe' must be true or false"),
])
def test_deploy_set_values_are_checked_before_any_call(moto_url, tmp_path, capsys, setting, expected):
    reset(moto_url)
    assert main(["deploy", "--set", setting, "--component", "com.example.App=1.0.0", "--no-follow",
                 "--sandbox", moto_url, "--state-dir", str(tmp_path)]) == 2
    assert expected in _one_line_error(capsys)
