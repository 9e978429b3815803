"""The image verification suite's fixtures: a root shell on the host under test, over SSH."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import imagedef, proc
from nomadic.imagechecks import Run

NO_HOST = "no --host given: run `invoke verify-image --host ADDRESS` (or pytest tests/image --host ...) to check a booted image"


def ssh_argv(host: str, port: int, user: str, key: str | None, command: str) -> list[str]:
    """ssh running `command` as root through sudo; host keys are not recorded (every fresh clone has new ones)."""
    argv = ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    if key:
        argv += ["-i", str(Path(key).expanduser())]
    return argv + [f"{user}@{host}", "sudo", "-n", "bash", "-c", proc.show([command])]


@pytest.fixture(scope="session")
def host(request: pytest.FixtureRequest) -> Run:
    address = request.config.getoption("--host")
    if not address:
        pytest.skip(NO_HOST)
    port, user, key = (request.config.getoption(o) for o in ("--port", "--user", "--key"))

    def run(command: str) -> proc.Result:
        return proc.run(ssh_argv(address, port, user, key, command), check=False, timeout=120, step="ssh")

    probe = run("true")
    if probe.exit_code != 0:
        pytest.fail(f"cannot run commands as root on {user}@{address}:{port}: {probe.stderr.strip() or probe.stdout.strip()}")
    return run


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> imagedef.ImageDef:
    return imagedef.load(request.config.getoption("--image-def"))


@pytest.fixture(scope="session")
def build_public_key(request: pytest.FixtureRequest) -> str | None:
    """The qemu build's login key, when this checkout built the image (it must not be authorized on the host)."""
    path = Path(__file__).resolve().parents[2] / "build" / "packer" / request.config.getoption("--image-def") / "ssh" / "build_key.pub"
    return path.read_text().strip() if path.is_file() else None
