"""Bad input through the real CLI: every refusal is one line, names what to fix, and changes nothing.

Each case runs `invoke` as a subprocess in its own scratch copy of the project with its own HOME (real keys made
by ssh-keygen). The expected outcomes below are written from the issue's rules, not from the code's messages:
refused means exit != 0, no traceback, at most 2 lines of output, the named setting/file/flag in it, and the
trees build/, secrets/, images/ and invoke.yaml exactly as they were. No case may print a gossip key or any
private key text. All cases run in parallel once per session; each test then checks one of them.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).with_name("invoke")
WATCHED = ("build", "secrets", "images", "invoke.yaml")
GOSSIP = {"consul": "c2VjcmV0LWNvbnN1bC1rZXktMzItYnl0ZXMtbG9uZyE=", "nomad": "c2VjcmV0LW5vbWFkLWtleS0zMi1ieXRlcy1sb25nISE="}
# A port this suite holds open for the whole run: the local launch's port check must refuse it.
HELD = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
HELD.bind(("127.0.0.1", 0))
HELD.listen(1)
HELD_PORT = HELD.getsockname()[1]


@dataclass
class Case:
    id: str
    argv: list[str]
    names: tuple[str, ...] = ()  # what the message must mention (setting, file or flag)
    yaml: str | None = None  # invoke.yaml
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None  # (project root, home), before the trees are hashed
    refused: bool = True
    as_user: bool = False  # without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so file modes bite as for a user
    timeout: float = 60.0


def write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)


def pub_with_private(root: Path, home: Path) -> None:
    ssh = home / ".ssh"
    write(ssh / "id_ed25519.pub", (ssh / "id_ed25519.pub").read_text() + (ssh / "id_ed25519").read_text())


def pub_text(text: str) -> Callable[[Path, Path], None]:
    return lambda root, home: write(home / ".ssh" / "id_ed25519.pub", text)


def pub_type_mismatch(root: Path, home: Path) -> None:
    kind, blob, *rest = (home / ".ssh" / "id_ed25519.pub").read_text().split()
    write(home / ".ssh" / "id_ed25519.pub", f"ssh-rsa {blob} x\n")


def pub_fifo(root: Path, home: Path) -> None:
    p = home / ".ssh" / "id_ed25519.pub"
    p.unlink()
    os.mkfifo(p)


def pub_symlink_zero(root: Path, home: Path) -> None:
    p = home / ".ssh" / "id_ed25519.pub"
    p.unlink()
    p.symlink_to("/dev/zero")


def live_oci_outputs(root: Path, home: Path) -> None:
    for name in ("ssh_config", "inventory.ini", "known_hosts"):
        write(root / "build" / "nomadic" / name, f"# outputs of a live OCI cluster: {name}\n")


def gossip_keys(root: Path, home: Path) -> None:
    write(root / "secrets" / "nomadic" / "gossip-keys.json", json.dumps(GOSSIP), 0o600)


def broken_gossip_keys(root: Path, home: Path) -> None:
    write(root / "secrets" / "nomadic" / "gossip-keys.json", "{not json", 0o600)


def oci_config(text: str | bytes, mode: int = 0o600, key: bytes | None = None) -> Callable[[Path, Path], None]:
    def setup(root: Path, home: Path) -> None:
        write(home / ".oci" / "config", text, mode)
        if key is not None:
            write(home / ".oci" / "key.pem", key, 0o600)

    return setup


def file_at(rel: str, data: str | bytes = "", mode: int | None = None) -> Callable[[Path, Path], None]:
    return lambda root, home: write(root / rel, data, mode)


def chmod(rel: str, mode: int) -> Callable[[Path, Path], None]:
    def setup(root: Path, home: Path) -> None:
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel).chmod(mode)

    return setup


def both(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def setup(root: Path, home: Path) -> None:
        for step in steps:
            step(root, home)

    return setup


PROFILE = "[DEFAULT]\nuser=ocid1.user.oc1..aaaa\nfingerprint=aa:bb\ntenancy=ocid1.tenancy.oc1..aaaa\nregion=us-ashburn-1\n"
OCI_YAML = (
    "oci:\n  compartment_id: ocid1.compartment.oc1..aaaa\n  subnet_id: ocid1.subnet.oc1.iad.aaaa\n  availability_domains: [Uocm:US-ASHBURN-AD-1]\n"
    "  endpoint: http://127.0.0.1:9\n"
)

CASES = [
    # 1. only exact OpenSSH public-key lines reach instance metadata
    Case("pub-key-then-private-key", ["render"], ("cluster.ssh_public_key",), setup=pub_with_private),
    Case("pub-key-not-a-key", ["render"], ("cluster.ssh_public_key",), setup=pub_text("ssh-this is not a key\n")),
    Case("pub-key-bad-base64", ["render"], ("cluster.ssh_public_key",), setup=pub_text("ssh-ed25519 AAAA%%%% me\n")),
    Case("pub-key-type-mismatch", ["render"], ("cluster.ssh_public_key",), setup=pub_type_mismatch),
    Case("pub-key-two-lines", ["render"], ("cluster.ssh_public_key",), setup=lambda r, h: write(
        h / ".ssh" / "id_ed25519.pub", (h / ".ssh" / "id_ed25519.pub").read_text() * 2)),
    Case("pub-key-missing", ["launch", "--provider", "local", "--image", "fake.qcow2"], ("cluster.ssh_public_key",),
         setup=both(file_at("fake.qcow2", b"QFI\xfb" + b"\0" * 508), lambda r, h: (h / ".ssh" / "id_ed25519.pub").unlink())),
    Case("pub-key-is-private", ["render"], ("cluster.ssh_public_key",),
         yaml="cluster:\n  ssh_public_key: ~/.ssh/id_ed25519\n"),
    # 2. destroy of another provider's (absent) nodes leaves this cluster's outputs alone
    Case("destroy-local-none-keeps-outputs", ["destroy", "--provider", "local", "--yes"], setup=live_oci_outputs,
         refused=False),
    # 3. tracebacks
    Case("yaml-malformed", ["render"], ("invoke.yaml",), yaml="cluster: [\n"),
    Case("yaml-tab-indented", ["render"], ("invoke.yaml",), yaml="cluster:\n\tcount: 2\n"),
    Case("yaml-not-mapping", ["render"], ("invoke.yaml",), yaml="- a\n- b\n"),
    Case("yaml-unreadable", ["render"], ("invoke.yaml",), yaml="cluster:\n  count: 1\n", as_user=True,
         setup=lambda r, h: (r / "invoke.yaml").chmod(0o000)),
    Case("yaml-not-utf8", ["render"], ("invoke.yaml",), setup=file_at("invoke.yaml", b"cluster:\n  name: \xff\xfe\n")),
    Case("yaml-section-scalar", ["render"], ("cluster",), yaml="cluster: 5\n"),
    Case("yaml-section-list", ["render"], ("local",), yaml="local: [1, 2]\n"),
    Case("yaml-setting-mapping", ["render"], ("cluster.count",), yaml="cluster:\n  count: {a: 1}\n"),
    Case("yaml-setting-list", ["render"], ("cluster.name",), yaml="cluster:\n  name: [a, b]\n"),
    Case("yaml-list-setting-of-mappings", ["render"], ("oci.availability_domains",),
         yaml="oci:\n  availability_domains: [{a: 1}]\n"),
    Case("ssh-port-base-too-big", ["render"], ("local.ssh_port_base",), yaml="local:\n  ssh_port_base: 70000\n"),
    Case("cluster-port-base-negative", ["render"], ("local.cluster_port_base",),
         yaml="local:\n  cluster_port_base: -5\n"),
    Case("ssh-port-base-overflows-with-count", ["render", "--count", "3"], ("local.ssh_port_base",),
         yaml="local:\n  ssh_port_base: 65534\n"),
    Case("endpoint-not-url", ["render"], ("oci.endpoint",), yaml="oci:\n  endpoint: localhost:8080\n"),
    Case("endpoint-ftp", ["render"], ("oci.endpoint",), yaml="oci:\n  endpoint: ftp://127.0.0.1/\n"),
    Case("image-def-not-utf8", ["render"], ("images/almalinux9.yaml",),
         setup=file_at("images/almalinux9.yaml", b"name_prefix: \xff\xfe\n")),
    Case("image-def-unreadable", ["render"], ("images/almalinux9.yaml",), as_user=True,
         setup=lambda r, h: (r / "images" / "almalinux9.yaml").chmod(0o000)),
    Case("image-def-duplicate-key", ["render"], ("images/almalinux9.yaml", "swap_mb"),
         setup=lambda r, h: write(r / "images" / "almalinux9.yaml",
                                  (r / "images" / "almalinux9.yaml").read_text() + "swap_mb: 0\nswap_mb: 1\n")),
    Case("oci-config-not-utf8", ["build-image", "--dry-run"], ("oci.config_file",), yaml=OCI_YAML,
         setup=oci_config(b"[DEFAULT]\nuser=\xff\xfe\n")),
    Case("oci-config-unreadable", ["build-image", "--dry-run"], ("oci.config_file",), yaml=OCI_YAML, as_user=True,
         setup=oci_config(PROFILE + "key_file=~/.oci/key.pem\n", mode=0o000, key=b"x")),
    Case("oci-api-key-unreadable", ["build-image", "--dry-run"], ("key_file",), yaml=OCI_YAML, as_user=True,
         setup=both(oci_config(PROFILE + "key_file=~/.oci/key.pem\n", key=b"k"),
                    lambda r, h: (h / ".oci" / "key.pem").chmod(0o000))),
    Case("oci-api-key-garbage", ["build-image", "--dry-run"], ("key_file",), yaml=OCI_YAML,
         setup=oci_config(PROFILE + "key_file=~/.oci/key.pem\n", key=b"this is not a PEM key\n")),
    Case("oci-api-key-not-utf8", ["build-image", "--dry-run"], ("key_file",), yaml=OCI_YAML,
         setup=oci_config(PROFILE + "key_file=~/.oci/key.pem\n", key=b"\xff\xfe\x00\x01")),
    Case("oci-api-key-missing", ["status"], ("key_file",), yaml=OCI_YAML,
         setup=oci_config(PROFILE + "key_file=~/.oci/nope.pem\n")),
    Case("oci-profile-missing", ["status"], ("oci.profile",), yaml=OCI_YAML + "  profile: NOPE\n",
         setup=oci_config(PROFILE + "key_file=~/.oci/key.pem\n", key=b"k")),
    Case("oci-config-unreadable-status", ["status"], ("oci.config_file",), yaml=OCI_YAML, as_user=True,
         setup=oci_config(PROFILE + "key_file=~/.oci/key.pem\n", mode=0o000, key=b"k")),
    Case("verify-image-port-word", ["verify-image", "--host", "127.0.0.1", "--port", "ssh"], ("--port",)),
    Case("build-is-a-file", ["render"], ("build",), setup=file_at("build", "not a folder\n")),
    Case("secrets-is-a-file", ["render"], ("secrets",), setup=file_at("secrets", "not a folder\n")),
    Case("build-not-writable", ["render"], ("build",), as_user=True, setup=chmod("build", 0o555)),
    Case("secrets-not-writable", ["render"], ("secrets",), as_user=True, setup=chmod("secrets", 0o555)),
    Case("count-huge", ["render", "--count", "99999999999999999999"], ("cluster.count",)),
    Case("count-word", ["render", "--count", "two"], ("count",)),
    # 4. the count is bounded before any node names are made
    Case("count-ten-million", ["render", "--count", "10000000"], ("cluster.count",), timeout=20),
    Case("count-beyond-network", ["render", "--count", "300"], ("cluster.count", "cluster.cidr"), timeout=20),
    # 5. nothing written before a refusal
    Case("broken-gossip-keys-render", ["render"], ("gossip-keys.json",), setup=broken_gossip_keys),
    Case("local-launch-port-taken", ["launch", "--provider", "local", "--image", "images-local/fake.qcow2"], ("local.ssh_port_base",),
         yaml=f"local:\n  ssh_port_base: {HELD_PORT - 1}\n",
         setup=file_at("images-local/fake.qcow2", b"QFI\xfb" + b"\0" * 508)),
    # 6. silently accepted before
    Case("yaml-unknown-section", ["render"], ("clustr",), yaml="clustr:\n  count: 3\n"),
    Case("yaml-unknown-setting", ["render"], ("cluster.countt",), yaml="cluster:\n  countt: 3\n"),
    Case("env-unknown-setting", ["render"], ("INVOKE_CLUSTER_COUNTT",), env={"INVOKE_CLUSTER_COUNTT": "3"}),
    Case("env-bad-value", ["render"], ("INVOKE_CLUSTER_COUNT",), env={"INVOKE_CLUSTER_COUNT": "three"}),
    Case("ocpus-negative", ["render"], ("oci.ocpus",), yaml="oci:\n  ocpus: -1\n"),
    Case("timeout-nan", ["render"], ("cluster.wait_timeout_s",), yaml="cluster:\n  wait_timeout_s: .nan\n"),
    Case("timeout-nan-env", ["render"], ("oci.launch_timeout_s",), env={"INVOKE_OCI_LAUNCH_TIMEOUT_S": "nan"}),
    Case("timeout-negative", ["render"], ("local.boot_timeout_s",), yaml="local:\n  boot_timeout_s: -5\n"),
    Case("timeout-infinite", ["render"], ("oci.poll_interval_s",), yaml="oci:\n  poll_interval_s: .inf\n"),
    Case("yaml-duplicate-key", ["render"], ("invoke.yaml", "count"), yaml="cluster:\n  count: 1\n  count: 3\n"),
    Case("yaml-duplicate-section", ["render"], ("invoke.yaml", "cluster"),
         yaml="cluster:\n  count: 1\ncluster:\n  count: 3\n"),
    # 7. hangs and floods
    Case("pub-key-fifo", ["render"], ("cluster.ssh_public_key",), setup=pub_fifo, timeout=20),
    Case("pub-key-dev-zero", ["render"], ("cluster.ssh_public_key",), setup=pub_symlink_zero, timeout=20),
    Case("pub-key-huge", ["render"], ("cluster.ssh_public_key",),
         setup=lambda r, h: write(h / ".ssh" / "id_ed25519.pub", "ssh-ed25519 " + "A" * 2_000_000 + "\n")),
    Case("yaml-fifo", ["render"], ("invoke.yaml",), timeout=20, setup=lambda r, h: os.mkfifo(r / "invoke.yaml")),
    # 8. messages that named the wrong thing
    Case("image-id-with-local", ["launch", "--provider", "local", "--image-id", "ocid1.image.oc1..x"], ("--image-id",)),
    # 9. flags
    Case("servers-word", ["render", "--servers", "many"], ("servers",)),
    # cases of our own
    Case("unknown-provider", ["status", "--provider", "aws"], ("cluster.provider",)),
    Case("cluster-name-bad", ["render", "--cluster", "Bad_Name"], ("cluster.name",)),
    Case("cidr-bad", ["render"], ("cluster.cidr",), yaml="cluster:\n  cidr: 10.0.0.1/24\n"),
    Case("image-missing", ["build-image", "--dry-run", "--image", "nope"], ("--image", "nope")),
    Case("local-qemu-missing", ["launch", "--provider", "local"], ("local.qemu",),
         yaml="local:\n  qemu: /nonexistent/qemu\n"),
]


def _hash_tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in WATCHED:
        base = root / name
        paths = [base] if not base.is_dir() or base.is_symlink() else [base, *sorted(base.rglob("*"))]
        for p in paths:
            rel = str(p.relative_to(root))
            try:
                st = p.lstat()
            except FileNotFoundError:
                out[rel] = "absent"
                continue
            if p.is_file() and not p.is_symlink():
                try:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError:
                    digest = "unreadable"
            else:
                digest = "dir" if p.is_dir() else "special"
            out[rel] = f"{oct(st.st_mode)} {digest}"
    return out


@dataclass
class Result:
    code: int
    output: str
    changed: list[str]
    secrets: list[str]


def _home(base: Path) -> Path:
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "case@test", "-f", str(home / ".ssh" / "id_ed25519")],
        check=True,
    )
    return home


def _run(case: Case, template: Path, base: Path) -> Result:
    root = base / "project"
    shutil.copytree(template, root, symlinks=True)
    home = _home(base)
    if case.yaml is not None:
        write(root / "invoke.yaml", case.yaml)
    if case.setup:
        case.setup(root, home)
    before = _hash_tree(root) if not (root / "invoke.yaml").is_fifo() else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}, **case.env)
    argv = [str(INVOKE), *case.argv]
    if case.as_user:
        caps = "-dac_override,-dac_read_search"
        argv = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *argv]
    try:
        done = subprocess.run(
            argv, cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=case.timeout
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"TIMEOUT after {case.timeout}s: {exc.stdout!r} {exc.stderr!r}"
    after = _hash_tree(root) if before else {}
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    private = (home / ".ssh" / "id_ed25519").read_text().splitlines()[1:-1]
    leaked = [s for s in [*GOSSIP.values(), *private] if s and s in output]
    # Give the next run of the suite a tree it can delete.
    for p in [root, *root.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    return Result(code, output, changed, leaked)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    if shutil.which("setpriv") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("setpriv and ssh-keygen are needed (util-linux, openssh-client)")
    template = tmp_path_factory.mktemp("template") / "project"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, files):
        src = REPO / rel.decode()
        if src.is_file():
            dst = template / rel.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (template / "invoke.yaml").unlink(missing_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c.id: pool.submit(_run, c, template, tmp_path_factory.mktemp(c.id)) for c in CASES}
        return {cid: f.result() for cid, f in futures.items()}


def _drop_caps_works(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    caps = "-dac_override,-dac_read_search"
    done = subprocess.run(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "cat", str(probe)],
                          capture_output=True)
    assert done.returncode != 0, "setpriv did not take away the right to read a mode-000 file"


def test_unreadable_cases_really_cannot_read(tmp_path: Path) -> None:
    _drop_caps_works(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, results: dict[str, Result]) -> None:
    r = results[case.id]
    assert "Traceback" not in r.output, r.output
    assert not r.secrets, f"secret text in the output: {r.output}"
    assert not r.changed, f"changed: {r.changed}\n{r.output}"
    lines = [line for line in r.output.splitlines() if line.strip()]
    if case.refused:
        assert r.code > 0, f"exit {r.code}: {r.output}"
        assert 1 <= len(lines) <= 2, r.output
        for name in case.names:
            assert name in r.output, f"{name!r} not named in: {r.output}"
    else:
        assert r.code == 0, r.output
