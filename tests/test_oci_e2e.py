"""End to end: `.venv/bin/invoke launch/status/destroy` as subprocesses, INVOKE_* env pointing at the emulator."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ociemu import Emulator
from tests.ociemu.server import IMAGE
from tests.ociemu.testing import env_for

ROOT = Path(__file__).resolve().parent.parent
INVOKE = ROOT / ".venv" / "bin" / "invoke"


def project(tmp_path: Path) -> Path:
    """A scratch project root: tasks.py copied, so build/ and secrets/ land in tmp, not in the checkout."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "tasks.py", root / "tasks.py")
    return root


def invoke(root: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INVOKE), "-r", str(root), *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


def test_launch_status_destroy_through_invoke(emu: Emulator, tmp_path: Path) -> None:
    root = project(tmp_path)
    env = env_for(emu, tmp_path)
    run = invoke(root, env, "launch", "--count", "2", "--image-id", IMAGE)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "launching nomadic-01, nomadic-02" in run.stdout
    assert (root / "build" / "nomadic" / "inventory.ini").is_file()
    assert (root / "build" / "nomadic" / "ssh_config").is_file()
    bodies = sorted(emu.launch_bodies, key=lambda b: b["displayName"])
    assert [b["createVnicDetails"]["privateIp"] for b in bodies] == ["10.0.0.2", "10.0.0.3"]
    user_data = base64.b64decode(bodies[0]["metadata"]["user_data"]).decode()
    assert user_data.startswith("#cloud-config")
    assert "Authorization header" not in run.stderr

    again = invoke(root, env, "launch", "--count", "2", "--image-id", IMAGE)
    assert again.returncode == 0 and "nothing to launch" in again.stdout and emu.launch_calls() == 2

    status = invoke(root, env, "status")
    assert status.returncode == 0, status.stderr
    assert "cluster nomadic: 2 nodes, 2 running" in status.stdout and "health:" in status.stdout

    refused = invoke(root, env, "destroy")
    assert refused.returncode != 0
    assert "error: destroy would terminate 2 instances" in refused.stderr and "--yes" in refused.stderr
    assert "Traceback" not in refused.stderr and emu.calls["terminate_instance"] == 0

    done = invoke(root, env, "destroy", "--yes")
    assert done.returncode == 0, done.stderr
    assert emu.live() == [] and not (root / "build" / "nomadic" / "inventory.ini").exists()


def test_user_errors_are_one_line_through_invoke(emu: Emulator, tmp_path: Path) -> None:
    root = project(tmp_path)
    env = env_for(emu, tmp_path, INVOKE_OCI_PROFILE="NOPE")
    run = invoke(root, env, "launch", "--count", "1", "--image-id", IMAGE)
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "setting oci.profile = 'NOPE': no such profile" in run.stderr
    run = invoke(root, env_for(emu, tmp_path), "launch", "--count", "0", "--image-id", IMAGE)
    assert run.returncode == 1 and "setting cluster.count = 0 is invalid" in run.stderr and "Traceback" not in run.stderr
    run = invoke(root, env_for(emu, tmp_path), "launch", "--count", "1")
    assert run.returncode == 1 and "no OCI image recorded" in run.stderr
    assert emu.launch_calls() == 0


def test_invoke_list_does_not_import_the_sdk() -> None:
    code = "import sys, tasks; assert 'oci' not in sys.modules, 'oci imported'; print(len(tasks.ns.tasks))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    listing = subprocess.run([str(INVOKE), "-r", str(ROOT), "--list"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "launch" in listing.stdout


@pytest.mark.integration
def test_launch_killed_half_way_then_rerun_converges(emu: Emulator, tmp_path: Path) -> None:
    root = project(tmp_path)
    emu.micro_limit = 10
    emu.provisioning_delay = 3600  # the first run is still waiting for RUNNING when it dies
    emu.throttle_launches = 1  # ... and one node is still backing off from a 429, never created
    env = env_for(emu, tmp_path, INVOKE_OCI_BACKOFF_BASE_S="60", INVOKE_OCI_BACKOFF_MAX_S="60")
    first = subprocess.Popen(
        [str(INVOKE), "-r", str(root), "launch", "--count", "3", "--allow-paid", "--image-id", IMAGE],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(emu.launch_bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(emu.launch_bodies) == 2 and emu.launch_calls() == 3
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert len(emu.live("nomadic")) == 2
    emu.provisioning_delay = 0
    rerun = invoke(root, env_for(emu, tmp_path), "launch", "--count", "3", "--allow-paid", "--image-id", IMAGE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    names = sorted(i["freeformTags"]["nomadic-node"] for i in emu.live("nomadic"))
    assert names == ["nomadic-01", "nomadic-02", "nomadic-03"]  # no duplicates
    assert len(emu.launch_bodies) == 3


@pytest.mark.integration
def test_ctrl_c_stops_waiting_and_says_what_exists(emu: Emulator, tmp_path: Path) -> None:
    root = project(tmp_path)
    emu.provisioning_delay = 3600
    env = env_for(emu, tmp_path)
    run = subprocess.Popen(
        [str(INVOKE), "-r", str(root), "launch", "--count", "2", "--image-id", IMAGE],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(emu.launch_bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        started = time.monotonic()
        os.kill(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, out + err
    assert time.monotonic() - started < 15  # the waiters stop at their next poll, not after launch_timeout_s
    assert "launch interrupted by Ctrl-C" in err and "Traceback" not in err
    assert out.count("(not yet RUNNING)") == 2
