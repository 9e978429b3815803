"""`invoke build-image` end to end as a subprocess: --dry-run with the real Packer for both targets, and every
user error as one line without a traceback. The full-build paths (success, failure, Ctrl-C) use a stand-in
`packer` script (build.packer points at it) that prints, fails, hangs or writes a manifest like Packer does:
they prove our orchestration, not Packer's builders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nomadic import artifacts, config, imagebuild, imagedef, packer
from nomadic.config import Target
from nomadic.errors import ConfigError

from packer_support import OCI_ENV, make_oci_config, require_tool

ROOT = Path(__file__).resolve().parent.parent
INVOKE = ROOT / ".venv" / "bin" / "invoke"


def project(tmp_path: Path) -> Path:
    """A scratch project root (tasks.py copied) so build/ lands in tmp, not in the checkout."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    return root


def invoke(root: Path, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run(
        [str(INVOKE), "-r", str(root), *args],
        env={**clean, "INVOKE_LOCAL_ACCEL": "tcg", **env},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def oci_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"INVOKE_OCI_CONFIG_FILE": str(make_oci_config(tmp_path / "oci")), **OCI_ENV, **extra}


# ---- dry run, real Packer ------------------------------------------------------------------------------------


def test_dry_run_qemu_renders_and_validates(tmp_path: Path) -> None:
    require_tool("packer")
    root = project(tmp_path)
    run = invoke(root, {}, "build-image", "--target", "qemu", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "rendered and validated for qemu.almalinux; not building" in run.stderr
    out = root / "build" / "packer" / "almalinux9"
    assert (out / "image.pkr.hcl").is_file() and (out / "seed" / "user-data").is_file()
    assert not (root / "build" / "artifacts.json").exists()


def test_dry_run_oci_with_a_throwaway_config(tmp_path: Path) -> None:
    require_tool("packer")
    root = project(tmp_path)
    run = invoke(root, oci_env(tmp_path), "build-image", "--target", "oci", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "rendered and validated for oracle-oci.almalinux; not building" in run.stderr


def test_invoke_list_shows_build_image() -> None:
    run = subprocess.run([str(INVOKE), "-r", str(ROOT), "--list"], capture_output=True, text=True, timeout=60)
    assert "build-image" in run.stdout and "verify-image" in run.stdout


# ---- user errors ---------------------------------------------------------------------------------------------


def test_packer_missing_says_how_to_install(tmp_path: Path) -> None:
    run = invoke(project(tmp_path), {"INVOKE_BUILD_PACKER": str(tmp_path / "no-packer")}, "build-image", "--dry-run")
    line = one_line_error(run)
    assert "Packer not found" in line and "apt-get install packer" in line and "build.packer" in line


def test_oci_config_file_missing_names_file_and_profile(tmp_path: Path) -> None:
    require_tool("packer")
    missing = tmp_path / "nope" / "config"
    env = {**OCI_ENV, "INVOKE_OCI_CONFIG_FILE": str(missing), "INVOKE_OCI_PROFILE": "WORK"}
    line = one_line_error(invoke(project(tmp_path), env, "build-image", "--target", "oci", "--dry-run"))
    assert f"setting oci.config_file = {missing} does not exist" in line and "oci setup config" in line


def test_oci_profile_missing_names_both(tmp_path: Path) -> None:
    require_tool("packer")
    env = oci_env(tmp_path, INVOKE_OCI_PROFILE="WORK")
    line = one_line_error(invoke(project(tmp_path), env, "build-image", "--target", "oci", "--dry-run"))
    assert "setting oci.profile = 'WORK': no such profile in" in line and str(tmp_path / "oci" / "config") in line
    assert "profiles there: DEFAULT" in line


def test_oci_subnet_unset_is_named(tmp_path: Path) -> None:
    require_tool("packer")
    env = {**oci_env(tmp_path), "INVOKE_OCI_SUBNET_ID": ""}
    line = one_line_error(invoke(project(tmp_path), env, "build-image", "--target", "oci", "--dry-run"))
    assert "setting oci.subnet_id is empty" in line


def test_unknown_image_definition(tmp_path: Path) -> None:
    require_tool("packer")
    line = one_line_error(invoke(project(tmp_path), {}, "build-image", "--image", "debian", "--dry-run"))
    assert "debian.yaml not found" in line and "almalinux9" in line


def test_bad_target_flag(tmp_path: Path) -> None:
    line = one_line_error(invoke(project(tmp_path), {}, "build-image", "--target", "aws", "--dry-run"))
    assert "build.target" in line and "oci, qemu" in line


def bare_definition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "images" / "almalinux9.yaml").read_text().replace("name: almalinux9", "name: bare")
    data = __import__("yaml").safe_load(text)
    data["oci"], data["local"] = {}, {}
    images = tmp_path / "images"
    images.mkdir()
    (images / "bare.yaml").write_text(__import__("yaml").safe_dump(data))
    monkeypatch.setattr(imagedef, "IMAGES_DIR", images)


def test_base_image_unset_for_oci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("packer")
    bare_definition(tmp_path, monkeypatch)
    cfg = make_oci_config(tmp_path / "oci")
    s = config.load({"build": {"image": "bare", "target": "oci"}, "oci": {
        "config_file": str(cfg), "subnet_id": OCI_ENV["INVOKE_OCI_SUBNET_ID"], "availability_domains": "AD-1"}},
        tmp_path)
    with pytest.raises(ConfigError, match=r"bare\.yaml: the OCI base image is unset"):
        imagebuild.build(s, dry_run=True)
    assert not (tmp_path / "build" / "packer" / "bare").exists(), "nothing rendered before the check"


def test_base_image_unset_for_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("packer")
    bare_definition(tmp_path, monkeypatch)
    s = config.load({"build": {"image": "bare", "target": "qemu"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"bare\.yaml: local\.urls is empty"):
        imagebuild.build(s, dry_run=True)


# ---- full build with a stand-in packer -----------------------------------------------------------------------

FAKE_PACKER = r"""#!/usr/bin/env bash
# Stand-in for Packer: version/init/validate succeed; build behaves as FAKE_PACKER_MODE says.
set -euo pipefail
case "$1" in
  version) echo "Packer v1.6.6" ;;
  init | validate) exit 0 ;;
  build)
    echo "qemu.almalinux: output will be in this color."
    echo "==> qemu.almalinux: Retrieving ISO"
    case "${FAKE_PACKER_MODE:-ok}" in
      fail) echo "==> qemu.almalinux: Error waiting for SSH: timeout"; exit 3 ;;
      ok-oci)
        cat >manifest.json <<'EOF'
{"builds": [{"name": "almalinux", "builder_type": "oracle-oci", "build_time": 1, "packer_run_uuid": "u2",
  "artifact_id": "ocid1.image.oc1.iad.aaaabakedimage", "files": null,
  "custom_data": {"image_name": "nomadic-almalinux9-2", "nomad_version": "1.10.3", "consul_version": "1.21.4",
                  "docker_ce_version": "28.5.1"}}], "last_run_uuid": "u2"}
EOF
        echo "Build 'oracle-oci.almalinux' finished." ;;
      hang)
        echo $$ >"$FAKE_PACKER_PID"
        trap 'echo "fake packer: interrupted"; rm -f "$FAKE_PACKER_PID"; exit 1' INT
        while :; do sleep 0.2; done ;;
      ok)
        mkdir -p output/nomadic-almalinux9-1
        printf 'QFI\xfbfake-qcow2' >output/nomadic-almalinux9-1/nomadic-almalinux9-1.qcow2
        cat >manifest.json <<'EOF'
{"builds": [{"name": "almalinux", "builder_type": "qemu", "build_time": 1, "packer_run_uuid": "u1",
  "artifact_id": "VM", "files": [{"name": "output/nomadic-almalinux9-1/nomadic-almalinux9-1.qcow2", "size": 15}],
  "custom_data": {"image_name": "nomadic-almalinux9-1", "nomad_version": "1.10.3", "consul_version": "1.21.4",
                  "docker_ce_version": "28.5.1"}}], "last_run_uuid": "u1"}
EOF
        echo "Build 'qemu.almalinux' finished." ;;
    esac ;;
esac
"""


def fake_packer(tmp_path: Path) -> Path:
    path = tmp_path / "fake-packer"
    path.write_text(FAKE_PACKER)
    path.chmod(0o755)
    return path


def test_build_streams_output_reads_manifest_and_records_the_qcow2(tmp_path: Path) -> None:
    for tool in ("qemu-system-x86_64", "qemu-img", "xorriso"):
        require_tool(tool)
    root = project(tmp_path)
    run = invoke(root, {"INVOKE_BUILD_PACKER": str(fake_packer(tmp_path))}, "build-image", "--target", "qemu")
    assert run.returncode == 0, run.stderr
    assert "==> qemu.almalinux: Retrieving ISO" in run.stderr  # streamed live to the user
    out = root / "build" / "packer" / "almalinux9"
    assert "Retrieving ISO" in (out / "packer-qemu.log").read_text()
    record = json.loads((root / "build" / "artifacts.json").read_text())["qemu"]["almalinux9"]
    qcow2 = out / "output/nomadic-almalinux9-1/nomadic-almalinux9-1.qcow2"
    assert record["path"] == str(qcow2.resolve())
    assert record["sha256"] == __import__("hashlib").sha256(qcow2.read_bytes()).hexdigest()
    assert record["nomad_version"] == "1.10.3"
    s = config.load({}, root)
    assert artifacts.lookup(s, Target.QEMU)["sha256"] == record["sha256"]


def test_packer_failure_names_step_exit_code_and_log(tmp_path: Path) -> None:
    for tool in ("qemu-system-x86_64", "qemu-img", "xorriso"):
        require_tool(tool)
    root = project(tmp_path)
    env = {"INVOKE_BUILD_PACKER": str(fake_packer(tmp_path)), "FAKE_PACKER_MODE": "fail"}
    line = one_line_error(invoke(root, env, "build-image", "--target", "qemu"))
    log = root / "build" / "packer" / "almalinux9" / "packer-qemu.log"
    assert "packer build (qemu) failed with exit code 3" in line and f"log: {log}" in line
    assert "Error waiting for SSH" in log.read_text()
    assert not (root / "build" / "artifacts.json").exists()


def test_ctrl_c_stops_packer_and_says_what_may_be_left(tmp_path: Path) -> None:
    for tool in ("qemu-system-x86_64", "qemu-img", "xorriso"):
        require_tool(tool)
    root = project(tmp_path)
    pidfile = tmp_path / "packer.pid"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env = {**clean, "INVOKE_LOCAL_ACCEL": "tcg", "INVOKE_BUILD_PACKER": str(fake_packer(tmp_path)),
           "FAKE_PACKER_MODE": "hang", "FAKE_PACKER_PID": str(pidfile)}
    # Its own session, like a terminal job: Ctrl-C there signals the whole foreground process group.
    proc = subprocess.Popen([str(INVOKE), "-r", str(root), "build-image", "--target", "qemu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not pidfile.exists():  # poll until the stand-in is inside "packer build"
        assert proc.poll() is None and time.monotonic() < deadline, "build-image never reached packer build"
        time.sleep(0.1)
    packer_pid = int(pidfile.read_text())
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "error: packer build (qemu) interrupted by Ctrl-C" in err and "qemu process may still run" in err
    assert _stopped(packer_pid), f"stand-in packer (pid {packer_pid}) still runs after Ctrl-C"


def _stopped(pid: int, wait_s: float = 10.0) -> bool:
    """Whether pid has exited: gone, or a zombie left for PID 1 to reap (slow here), within wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


# ---- the OCI base image is looked up before Packer launches anything (SDK against the local emulator) ---------


@pytest.fixture
def emu():
    from tests.ociemu import Emulator

    with Emulator() as e:
        yield e


def oci_build_settings(tmp_path: Path, emu, image: str = "almalinux9") -> config.Settings:
    from tests.ociemu.server import COMPARTMENT, SUBNET

    cfg = make_oci_config(tmp_path / "oci")
    return config.load({
        "build": {"image": image, "target": "oci", "packer": str(fake_packer(tmp_path))},
        "oci": {"config_file": str(cfg), "endpoint": emu.url, "compartment_id": COMPARTMENT, "subnet_id": SUBNET,
                "availability_domains": "AD-1"},
        "local": {"accel": "tcg"},
    }, tmp_path)


def definition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oci: dict) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "images" / "almalinux9.yaml").read_text())
    data["name"], data["oci"] = "probe", oci
    images = tmp_path / "images"
    images.mkdir()
    (images / "probe.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(imagedef, "IMAGES_DIR", images)


def test_base_image_not_found_stops_before_packer_build(tmp_path: Path, emu, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator holds no image with operating system version 9: the default filter finds nothing."""
    s = oci_build_settings(tmp_path, emu)
    monkeypatch.setenv("FAKE_PACKER_MODE", "fail")
    with pytest.raises(ConfigError, match=r"almalinux9\.yaml: no OCI base image found for AlmaLinux 9 named like"):
        imagebuild.build(s, dry_run=False)
    assert not (imagebuild.build_dir(s) / "packer-oci.log").exists(), "Packer never ran"


def test_base_image_ocid_not_found(tmp_path: Path, emu, monkeypatch: pytest.MonkeyPatch) -> None:
    definition(tmp_path, monkeypatch, {"base_image_ocid": "ocid1.image.oc1.iad.aaaamissing"})
    s = oci_build_settings(tmp_path, emu, image="probe")
    with pytest.raises(ConfigError, match=r"OCI base image ocid1.image.oc1.iad.aaaamissing not found"):
        imagebuild.build(s, dry_run=False)


def test_oci_build_records_the_image_ocid(tmp_path: Path, emu, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.ociemu.server import IMAGE

    definition(tmp_path, monkeypatch, {"base_image_filter": {"operating_system": "AlmaLinux",
                                                              "display_name_search": "^nomadic-"}})
    s = oci_build_settings(tmp_path, emu, image="probe")
    monkeypatch.setenv("FAKE_PACKER_MODE", "ok-oci")
    imagebuild.build(s, dry_run=False)
    assert f"base image: nomadic-almalinux9 ({IMAGE})" in capsys.readouterr().err
    # Packer gets the image the lookup found, not its own second lookup by filter.
    rendered = (imagebuild.build_dir(s, "probe") / packer.TEMPLATE).read_text()
    assert f'default     = "{IMAGE}"' in rendered and "base_image_filter {" not in rendered
    record = artifacts.lookup(s, Target.OCI, "probe")
    assert record["image_id"] == "ocid1.image.oc1.iad.aaaabakedimage" and record["image_name"] == "nomadic-almalinux9-2"
