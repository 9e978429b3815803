"""What stands in for Nomad's scheduler, Docker and consul-template when a job's payload runs on loopback.

Real here: Nomad's own HCL2 parser (`nomad job run -output`, no agent) reads each rendered job file, so the
template text a test starts from is exactly what Nomad would hand its template runner; knotd, nginx and HAProxy
are Debian's, run on high loopback ports in scratch folders, as `nobody` when the tests run as root.

Stand-ins, each explicit:
- consul-template: `render_template` implements only what our templates use, `{{ env "NAME" }}` and
  `{{ range service "NAME" }}...{{ else }}...{{ end }}` (with `.Node`, `.Address`, `.Port`), from values the test
  passes. Any other `{{ ... }}` fails the test, so a new function in a template cannot slip past untested.
- Docker: the container paths and ports a template hard-codes (`0.0.0.0@53`, `listen 8080;`, `/rundir`, ...)
  are replaced by scratch paths and loopback ports with `replace_once`, which fails unless each text occurs
  exactly once, so the tested file differs from the job's only in those named places.
- The scheduler: the test decides how many instances run and where (two nginx on two loopback ports).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pytest

from nomadic import config, proc
from nomadic.jobs import spec
from tests import agents

NOBODY = 65534


def need(condition: bool, why: str) -> None:
    """Skip with the reason when a tool is missing, except in CI where that is a failure."""
    if not condition:
        if agents.in_ci():
            pytest.fail(why)
        pytest.skip(why)


def nomad_binary() -> str:
    """The test Nomad (tests/agents.py): skipped with the reason when it is not built, a failure in CI."""
    return str(agents.require()["nomad"])


INVENTORY = """# test cluster
[servers]
demo-01 ansible_host=192.0.2.10 ansible_user=opc private_ip=10.0.0.2 public_ip=192.0.2.10

[clients]
demo-01 ansible_host=192.0.2.10 ansible_user=opc private_ip=10.0.0.2 public_ip=192.0.2.10
demo-02 ansible_host=192.0.2.11 ansible_user=opc private_ip=10.0.0.3 public_ip=198.51.100.11
"""
# Documentation addresses (RFC 5737): they only appear as data in the zone, nothing is ever sent to them.
ADDRESSES = ("192.0.2.10", "198.51.100.11")
DOMAIN = "oracle.example.com"


def demo_settings(root: Path, **jobs: object) -> config.Settings:
    (root / "build" / "demo").mkdir(parents=True, exist_ok=True)
    (root / "build" / "demo" / "inventory.ini").write_text(INVENTORY)
    return config.load({"cluster": {"name": "demo"}, "jobs": {"domain": DOMAIN, **jobs}}, root)


def rendered(job: spec.Job, root: Path, **jobs: object) -> str:
    settings = demo_settings(root, **jobs)
    return spec.render_job(job, settings, spec.read_nodes(settings))


def nomad_job(text: str, folder: Path) -> dict:
    """The job as Nomad's HCL2 parser reads it (the API's JSON), without any agent."""
    path = folder / "job.nomad.hcl"
    path.write_text(text)
    env = {"NOMAD_ADDR": "http://127.0.0.1:1", "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([nomad_binary(), "job", "run", "-output", str(path)], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)["Job"]


def templates(job: dict) -> dict[str, str]:
    """Each template block's text by its destination, across the job's tasks."""
    return {
        t["DestPath"]: t["EmbeddedTmpl"]
        for group in job["TaskGroups"]
        for task in group["Tasks"]
        for t in task.get("Templates") or []
    }


@dataclass(frozen=True)
class Service:
    node: str
    address: str
    port: int


_ENV = re.compile(r'\{\{\s*env\s+"([^"]+)"\s*\}\}')
_RANGE = re.compile(
    r'\{\{-?\s*range\s+service\s+"([^"]+)"\s*\}\}(.*?)(?:\{\{-?\s*else\s*\}\}(.*?))?\{\{-?\s*end\s*\}\}', re.S
)


def render_template(text: str, env: Mapping[str, str], services: Mapping[str, Sequence[Service]] = {}) -> str:
    """consul-template, for the two functions our templates use (see the module docstring)."""

    def one_range(match: re.Match[str]) -> str:
        body, otherwise = match[2], match[3] or ""
        found = services[match[1]]
        if not found:
            return otherwise
        return "".join(
            body.replace("{{ .Node }}", s.node).replace("{{ .Address }}", s.address).replace("{{ .Port }}", str(s.port))
            for s in found
        )

    # `{{-` trims the whitespace before it, as Go templates do.
    out = _RANGE.sub(one_range, re.sub(r"\s+(\{\{-)", r"\1", text))
    out = _ENV.sub(lambda m: env[m[1]], out)
    leftover = re.search(r"\{\{.*?\}\}", out)
    assert leftover is None, f"template uses {leftover[0]!r}, which the consul-template stand-in does not know"
    return out


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the rendered template"
    return text.replace(old, new)


def free_port() -> int:
    """A loopback port free for both TCP and UDP."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)


def scratch() -> Path:
    """A folder the daemons' user can write (pytest's tmp_path is 0700 root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="nomadic-jobs-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    return folder


def as_daemon_user() -> list[str]:
    """Run unprivileged: as nobody when the tests run as root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if os.geteuid() == 0:
        os.chown(path.parent, NOBODY, NOBODY)
        os.chown(path, NOBODY, NOBODY)
    return path


@contextlib.contextmanager
def daemon(
    argv: Sequence[str], log: Path, ready: Callable[[], bool], what: str, timeout: float = 15.0
) -> Iterator[subprocess.Popen]:
    """Start a daemon (unprivileged) in the foreground, wait until `ready()`, always stop it when the block ends."""
    with log.open("ab") as out:
        child = subprocess.Popen([*as_daemon_user(), *argv], stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield child
    finally:
        stop(child)


def stop(child: subprocess.Popen) -> None:
    proc.stop_child(child)


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if Path(p).exists()), None)
    need(found is not None, f"{name} not installed (bin/setup --test installs it)")
    return str(found)


@contextlib.contextmanager
def nomad_agent(folder: Path) -> Iterator[str]:
    """A real Nomad server on loopback, unprivileged (one-node raft, no client: nothing is ever placed); its API address."""
    http, rpc, serf = free_port(), free_port(), free_port()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "agent.hcl").write_text(
        f'data_dir = "{folder / "data"}"\nbind_addr = "127.0.0.1"\n'
        f"ports {{\n  http = {http}\n  rpc = {rpc}\n  serf = {serf}\n}}\n"
        'server {\n  enabled = true\n  bootstrap_expect = 1\n}\nclient {\n  enabled = false\n}\n'
        'advertise {\n  http = "127.0.0.1"\n  rpc = "127.0.0.1"\n  serf = "127.0.0.1"\n}\n'
    )
    address = f"http://127.0.0.1:{http}"

    def leader() -> bool:
        try:
            with urllib.request.urlopen(f"{address}/v1/status/leader", timeout=1) as r:
                return bool(json.loads(r.read()))
        except Exception:
            return False

    if os.geteuid() == 0:
        for path in (folder / "data", folder / "agent.hcl"):
            os.chown(path, NOBODY, NOBODY)
    argv = [nomad_binary(), "agent", "-config", str(folder / "agent.hcl")]
    with daemon(argv, folder / "nomad.log", leader, "nomad agent", timeout=60):
        yield address
