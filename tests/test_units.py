"""The files baked into the image, checked by the tools that read them: systemd-analyze verify on the units,
systemd-tmpfiles on the data dirs, firewalld's own service reader on the service XMLs; contents against imagefacts.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nomadic import config, imagedef, imagefacts, packer

from packer_support import missing, require_tool


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    settings = config.load({"local": {"accel": "tcg"}}, tmp_path_factory.mktemp("render"))
    ctx = packer.build_context(settings, imagedef.load("almalinux9"), (1, 6, 6), "tcg", "ssh-ed25519 AAAA k")
    return {k.removeprefix("nomadic-files/"): v for k, v in packer.render_files(ctx).items()}


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def test_consul_unit_runs_as_consul_only_once_configured(files: dict[str, str]) -> None:
    u = unit(files["systemd/consul.service"])
    assert u["Unit"]["ConditionFileNotEmpty"] == imagefacts.CONSUL_CONFIG_FILE
    assert u["Service"]["User"] == imagefacts.CONSUL_USER and u["Service"]["Group"] == imagefacts.CONSUL_GROUP
    assert u["Service"]["ExecStart"].split()[0] == imagefacts.CONSUL_BIN
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_nomad_unit_runs_as_root_after_consul_and_out_of_the_oom_killers_way(files: dict[str, str]) -> None:
    u = unit(files["systemd/nomad.service"])
    assert u["Service"]["User"] == "root" and u["Service"]["OOMScoreAdjust"] == "-1000"
    assert "consul.service" in u["Unit"]["Wants"].split() and "consul.service" in u["Unit"]["After"].split()
    assert u["Unit"]["ConditionFileNotEmpty"] == imagefacts.NOMAD_CONFIG_FILE
    assert u["Service"]["ExecStart"].split()[0] == imagefacts.NOMAD_BIN
    assert u["Install"]["WantedBy"] == "multi-user.target"


def scratch_root(tmp_path: Path, files: dict[str, str]) -> Path:
    """A root with the host's systemd units (for targets like sysinit.target), our two units and stubs
    standing in for the executables the units name (no Nomad or Consul can be installed here)."""
    root = tmp_path / "root"
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(d).is_dir():
            shutil.copytree(d, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
            break
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in ("consul.service", "nomad.service"):
        (root / "etc/systemd/system" / name).write_text(files[f"systemd/{name}"])
    for exe in (imagefacts.CONSUL_BIN, imagefacts.NOMAD_BIN, "/usr/bin/kill"):
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze")
    return subprocess.run(
        [tool, "verify", f"--root={root}", *units], capture_output=True, text=True, timeout=120
    )


def test_systemd_analyze_verify_accepts_both_units(tmp_path: Path, files: dict[str, str]) -> None:
    """What this proves: systemd (Debian 12's 252; AlmaLinux 9 has 252 too) parses every directive without a
    warning, the dependencies resolve and the ExecStart/ExecReload paths exist and are executable inside the
    root. The binaries are stubs here: it does not prove Nomad or Consul accept their arguments."""
    run = verify(scratch_root(tmp_path, files), "consul.service", "nomad.service")
    assert run.returncode == 0 and run.stderr == "" and run.stdout == "", run.stderr


def test_verify_catches_a_bad_directive(tmp_path: Path, files: dict[str, str]) -> None:
    """The check above can fail: systemd warns (exit 0) on a bad value, and we count any output as failure."""
    root = scratch_root(tmp_path, files)
    path = root / "etc/systemd/system/nomad.service"
    path.write_text(path.read_text().replace("OOMScoreAdjust=-1000", "OOMScoreAdjust=lots"))
    run = verify(root, "nomad.service")
    assert "Failed to parse the OOM score adjust value" in run.stderr


def test_verify_catches_a_missing_binary(tmp_path: Path, files: dict[str, str]) -> None:
    root = scratch_root(tmp_path, files)
    (root / imagefacts.CONSUL_BIN.lstrip("/")).unlink()
    run = verify(root, "consul.service")
    assert run.returncode != 0 and f"{imagefacts.CONSUL_BIN} is not executable" in run.stderr


def test_tmpfiles_recreates_empty_data_dirs_with_owner_and_mode(tmp_path: Path, files: dict[str, str]) -> None:
    """systemd-tmpfiles --create, as at boot, with the image's users in the scratch root's passwd."""
    tool = require_tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d/nomadic.conf").write_text(files["tmpfiles.d/nomadic.conf"])
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nconsul:x:991:992::/opt/consul:/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nconsul:x:992:\n")
    run = subprocess.run([tool, "--create", f"--root={root}", "nomadic.conf"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ids = {"root": (0, 0), "consul": (991, 992)}
    for fact in imagefacts.DATA_DIRS:
        st = (root / fact.path.lstrip("/")).stat()
        assert (st.st_uid, st.st_gid) == (ids[fact.owner][0], ids[fact.group][1]), fact.path
        assert st.st_mode & 0o7777 == fact.mode, fact.path
        assert not any((root / fact.path.lstrip("/")).iterdir())


def firewalld_read(directory: Path, name: str) -> subprocess.CompletedProcess[str]:
    """firewalld's own XML reader (python3-firewall, under Debian's python3, not our venv)."""
    python = require_tool("python3")
    code = (
        "import json, sys\n"
        "from firewall.core.io.service import service_reader\n"
        "s = service_reader(sys.argv[1] + '.xml', sys.argv[2])\n"
        "print(json.dumps({'name': s.name, 'ports': s.ports}))\n"
    )
    run = subprocess.run(["/usr/bin/python3", "-c", code, name, str(directory)], capture_output=True, text=True)
    if "No module named 'firewall'" in run.stderr:
        missing("python3-firewall (firewalld's Python module)")
    return run


@pytest.mark.parametrize("name", sorted(imagefacts.FIREWALLD_SERVICES))
def test_firewalld_reads_our_service_definitions(tmp_path: Path, files: dict[str, str], name: str) -> None:
    (tmp_path / f"{name}.xml").write_text(files[f"firewalld/{name}.xml"])
    run = firewalld_read(tmp_path, name)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["name"] == name
    assert [tuple(p) for p in got["ports"]] == [(str(p.port), p.protocol) for p in imagefacts.FIREWALLD_SERVICES[name]]


def test_firewalld_reader_rejects_a_bad_port(tmp_path: Path, files: dict[str, str]) -> None:
    (tmp_path / "nomad.xml").write_text(files["firewalld/nomad.xml"].replace('port="4646"', 'port="464600"'))
    run = firewalld_read(tmp_path, "nomad")
    assert run.returncode != 0 and "INVALID_PORT" in run.stderr


def test_sysctl_and_modules_match_imagefacts(files: dict[str, str]) -> None:
    lines = [l for l in files["sysctl.d/90-nomadic.conf"].splitlines() if l and not l.startswith("#")]
    assert dict(l.split(" = ", 1) for l in lines) == imagefacts.SYSCTLS
    low, high = map(int, imagefacts.SYSCTLS["net.ipv4.ip_local_port_range"].split())
    nomad_low, nomad_high = imagefacts.NOMAD_DYNAMIC_PORTS
    assert high < nomad_low or low > nomad_high, "ephemeral ports overlap Nomad's dynamic port range"
    modules = [l for l in files["modules-load.d/nomadic.conf"].splitlines() if l and not l.startswith("#")]
    assert "br_netfilter" in modules


def test_port_facts_are_the_documented_agent_ports() -> None:
    ports = {name: {(p.port, p.protocol) for p in ps} for name, ps in imagefacts.FIREWALLD_SERVICES.items()}
    assert ports["consul"] == {(8300, "tcp"), (8301, "tcp"), (8301, "udp")}
    assert ports["nomad"] == {(4646, "tcp"), (4647, "tcp"), (4648, "tcp"), (4648, "udp")}
