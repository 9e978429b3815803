"""The provisioning scripts: shellcheck on each, and their behaviour run for real against a scratch root.

What the scratch-root tests prove, and what not: every script runs in bash with NOMADIC_ROOT prefixing the paths it
touches; dnf, rpm, systemctl, cloud-init, getent, useradd, chown, stat, firewall-offline-cmd, getenforce, pgrep,
modprobe, sysctl and restorecon are replaced by recorders (tests/fakebin.py) that log each call and mimic what
the real RPMs leave behind (binaries, default configs, /opt data dirs, the consul user). Real coreutils, dd and
mkswap do the rest. This checks the scripts' own logic: order, check-then-act (a second run changes nothing and
installs nothing), cleanup leaving no identity, and the self-check failing on each missing fact. It does not
prove that AlmaLinux's real packages, repositories or SELinux behave as the recorders do: only a real bake
(and tests/image against the result) shows that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nomadic import config, imagedef, imagefacts, packer

from packer_support import require_tool

SCRIPTS = packer.SCRIPTS_DIR
FAKES = (
    "dnf", "rpm", "systemctl", "cloud-init", "getent", "useradd", "chown", "stat", "firewall-offline-cmd",
    "firewall-cmd", "getenforce", "setenforce", "pgrep", "modprobe", "sysctl", "restorecon",
)
MUTATING = {
    ("dnf", "install"), ("dnf", "upgrade"), ("dnf", "config-manager"), ("dnf", "versionlock"), ("systemctl", "enable"),
    ("systemctl", "disable"),
    ("systemctl", "daemon-reload"), ("systemctl", "start"), ("useradd", None), ("setenforce", None),
}
BUILD_USER = "almalinux"


@pytest.mark.parametrize("script", packer.scripts())
def test_shellcheck(script: str) -> None:
    shellcheck = require_tool("shellcheck")
    run = subprocess.run([shellcheck, "-x", "-S", "style", str(SCRIPTS / script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_script_is_strict_and_documented() -> None:
    readme = (SCRIPTS / "README.md").read_text()
    for name in packer.scripts():
        text = (SCRIPTS / name).read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text, name
        assert f"`{name}`" in readme, f"{name} is not described in scripts/README.md"
        for var in sorted(set(_env_vars(text))):
            assert f"`{var}`" in readme, f"{name} reads {var}, which scripts/README.md does not document"


def _env_vars(text: str) -> list[str]:
    import re

    return [m for m in re.findall(r"\$\{([A-Z][A-Z0-9_]+)[:?}-]", text) if m not in {"SUDO_USER"}]


class Scratch:
    """A scratch root shaped like a booted AlmaLinux build VM, plus the recorders on PATH."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.files = tmp / "files"
        self.bin = tmp / "bin"
        self.state = tmp / "state.json"
        self.log = tmp / "calls.jsonl"
        self._populate()
        self._render(tmp)
        self._fakes()

    def _populate(self) -> None:
        r = self.root
        text = {
            "etc/passwd": f"root:x:0:0:root:/root:/bin/bash\n{BUILD_USER}:x:1000:1000::/home/{BUILD_USER}:/bin/bash\n",
            "etc/selinux/config": "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
            "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
            "etc/ssh/ssh_host_ed25519_key": "private\n",
            "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA host\n",
            "etc/ssh/sshd_config": "PermitRootLogin no\n",
            "etc/fstab": "UUID=abcd / xfs defaults 0 0\n",
            # As AlmaLinux's GenericCloud and OCI kickstarts leave them.
            "etc/default/grub": 'GRUB_TIMEOUT=0\nGRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 no_timer_check net.ifnames=0"\n',
            "etc/cloud/cloud.cfg": "users:\n - default\ndisable_root: true\n",
            f"home/{BUILD_USER}/.ssh/authorized_keys": "ssh-ed25519 AAAA nomadic-build\n",
            "root/.ssh/authorized_keys": "ssh-ed25519 AAAA root\n",
            "var/lib/cloud/instances/nomadic-build/user-data.txt": "#cloud-config\n",
            "var/lib/cloud/seed/nocloud/user-data": "#cloud-config\n",
            "var/lib/cloud/data/instance-id": "nomadic-build\n",
            "var/log/cloud-init.log": "log\n",
            "var/cache/dnf/metadata.cache": "x\n",
            "var/lib/systemd/random-seed": "seed\n",
        }
        for rel, content in text.items():
            (r / rel).parent.mkdir(parents=True, exist_ok=True)
            (r / rel).write_text(content)
        (r / "var/lib/cloud/instance").symlink_to("/var/lib/cloud/instances/nomadic-build")
        for d in ("etc/systemd/system", "etc/yum.repos.d", "usr/bin", "tmp"):
            (r / d).mkdir(parents=True, exist_ok=True)

    def _render(self, tmp: Path) -> None:
        settings = config.load({"local": {"accel": "tcg"}}, tmp)
        image = imagedef.load("almalinux9")
        self.image = image
        ctx = packer.build_context(settings, image, (1, 6, 6), "tcg", "ssh-ed25519 AAAA nomadic-build")
        ctx["swap_mb"] = 2  # a small swap file keeps the test fast; the size logic is the same
        for rel, text in packer.render_files(ctx).items():
            if rel.startswith("nomadic-files/"):
                path = self.files / rel.removeprefix("nomadic-files/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def _fakes(self) -> None:
        self.bin.mkdir()
        fake = Path(__file__).resolve().parent / "fakebin.py"
        for name in FAKES:
            wrapper = self.bin / name
            # -S: the recorders need only the standard library, and start several times faster without site.
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{fake}" {name} "$@"\n')
            wrapper.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        v = self.image.versions
        return {
            "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "NOMADIC_ROOT": str(self.root),
            "NOMADIC_FILES": str(self.files),
            "FAKE_STATE": str(self.state),
            "FAKE_LOG": str(self.log),
            "DOCKER_CE_VERSION": v.docker_ce,
            "NOMAD_VERSION": v.nomad,
            "CONSUL_VERSION": v.consul,
            "EXTRA_PACKAGES": "htop",
            "SWAP_MB": "2",
            "SUDO_USER": BUILD_USER,
            "WAIT_TIMEOUT_S": "5",
            **extra,
        }

    def run(self, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        assert str(self.root).startswith("/tmp") or "pytest" in str(self.root), "never run the scripts on /"
        return subprocess.run(
            ["bash", str(SCRIPTS / script)], env=self.env(**extra), capture_output=True, text=True, timeout=120
        )

    def must(self, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        run = self.run(script, **extra)
        assert run.returncode == 0, f"{script} failed:\n{run.stdout}{run.stderr}"
        return run

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def state_data(self) -> dict:
        return json.loads(self.state.read_text())

    def snapshot(self) -> dict[str, str]:
        """Every path under the root with its type, mode and content hash, plus the recorders' state."""
        snap: dict[str, str] = {}
        for p in sorted(self.root.rglob("*")):
            rel = str(p.relative_to(self.root))
            if p.is_symlink():
                snap[rel] = f"link {os.readlink(p)}"
            elif p.is_dir():
                snap[rel] = f"dir {p.stat().st_mode & 0o7777:o}"
            else:
                snap[rel] = f"file {p.stat().st_mode & 0o7777:o} {hashlib.sha256(p.read_bytes()).hexdigest()}"
        if self.state.exists():
            snap["<state>"] = self.state.read_text()
        return snap


def mutating(calls: list[list[str]]) -> list[list[str]]:
    out = []
    for call in calls:
        words = [w for w in call[1:] if not w.startswith("-")]
        if (call[0], words[0] if words else None) in MUTATING or (call[0], None) in MUTATING:
            out.append(call)
    return out


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    require_tool("mkswap")
    return Scratch(tmp_path)


def bake(s: Scratch) -> None:
    for script in packer.scripts():
        s.must(script)


@pytest.fixture(scope="module")
def baked_once(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    require_tool("mkswap")
    s = Scratch(tmp_path_factory.mktemp("baked"))
    bake(s)
    return s


@pytest.fixture
def baked(baked_once: Scratch, tmp_path: Path) -> Scratch:
    """A copy of one finished bake (baking takes seconds; the damage tests only need its result)."""
    import shutil

    s = Scratch.__new__(Scratch)
    s.image = baked_once.image
    base = baked_once.root.parent
    for attr in ("root", "files", "bin"):
        shutil.copytree(getattr(baked_once, attr), tmp_path / getattr(baked_once, attr).name, symlinks=True)
        setattr(s, attr, tmp_path / getattr(baked_once, attr).name)
    s.state, s.log = tmp_path / "state.json", tmp_path / "calls.jsonl"
    s.state.write_text(baked_once.state.read_text().replace(str(base), str(tmp_path)))
    s.log.write_text("")
    return s


def test_full_bake_in_scratch_root_passes_the_self_check(baked_once: Scratch) -> None:
    scratch = baked_once
    r, state = scratch.root, scratch.state_data()
    v = scratch.image.versions
    assert state["installed"]["nomad"] == v.nomad and state["installed"]["consul"] == v.consul
    assert state["installed"]["docker-ce"] == v.docker_ce and "htop" in state["installed"]
    assert set(imagefacts.ENABLED_UNITS) <= set(state["enabled"])
    assert not set(imagefacts.DISABLED_UNITS) & set(state["enabled"]), "cloud-init enables the agents, not the bake"
    calls = scratch.calls()
    assert ["dnf", "-y", "install", f"nomad-{v.nomad}", f"consul-{v.consul}"] in calls
    assert not [c for c in calls if c[0] == "systemctl" and ("start" in c or "--now" in c or "restart" in c)]
    assert (r / "etc/systemd/system/consul.service").read_text() == (scratch.files / "systemd/consul.service").read_text()
    assert state["owners"][str(r / "etc/consul.d")] == "root:consul"
    assert (r / "etc/consul.d").stat().st_mode & 0o777 == 0o750
    assert (r / "etc/consul.d/consul.env").exists(), "only the default consul.hcl goes, not the RPM's env file"
    assert (r / "swapfile").read_bytes()[4086:4096] == b"SWAPSPACE2"
    assert (r / "etc/fstab").read_text().count("/swapfile none swap") == 1
    # The pins are locked (a node's `dnf upgrade` keeps them) and the CNI plugins are where cni_path points.
    locks = (r / "etc/dnf/plugins/versionlock.list").read_text().splitlines()
    assert sorted(locks) == sorted(f"{n}-0:{ver}-1.el9.*" for n, ver in [
        ("docker-ce", v.docker_ce), ("docker-ce-cli", v.docker_ce), ("nomad", v.nomad), ("consul", v.consul)])
    assert os.access(r / "usr/libexec/cni/bridge", os.X_OK)


def test_swap_exists_before_any_script_runs_dnf() -> None:
    """The build VM defaults to 1 GB: dnf must find the swap file already on."""
    order = packer.scripts()
    uses_dnf = [s for s in order if re.search(r"^\s*(dnf|rpm)\s", (SCRIPTS / s).read_text(), re.M)]
    assert uses_dnf and order.index("15-create-swap.sh") < min(order.index(s) for s in uses_dnf), uses_dnf
    assert "swapon" in (SCRIPTS / "15-create-swap.sh").read_text()


def test_cleanup_leaves_no_identity_behind(baked_once: Scratch) -> None:
    """After the bake nothing identifies the build VM: no agent data, default configs, machine-id content,
    SSH host keys, login keys, cloud-init instance state/seed/logs or dnf caches."""
    scratch = baked_once
    r = scratch.root
    for path in imagefacts.ABSENT_PATHS:
        assert not (r / path.lstrip("/")).exists() and not (r / path.lstrip("/")).is_symlink(), path
    assert (r / "etc/machine-id").read_text() == ""
    assert not list((r / "etc/ssh").glob("ssh_host_*"))
    assert (r / "etc/ssh/sshd_config").exists()
    assert not (r / f"home/{BUILD_USER}/.ssh/authorized_keys").exists()
    assert not (r / "root/.ssh/authorized_keys").exists()
    assert not (r / "var/log/cloud-init.log").exists()
    assert ["cloud-init", "clean", "--logs", "--seed"] in scratch.calls()


def test_each_script_is_safe_to_run_twice(scratch: Scratch) -> None:
    """Each script, in bake order, runs twice in a row: the second run changes no file and installs, enables
    or creates nothing."""
    problems = []
    for script in packer.scripts():
        scratch.must(script)
        before, seen = scratch.snapshot(), len(scratch.calls())
        scratch.must(script)
        after = scratch.snapshot()
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:
            problems.append(f"{script}: second run changed {changed}")
        if mutating(scratch.calls()[seen:]):
            problems.append(f"{script}: second run called {mutating(scratch.calls()[seen:])}")
    assert problems == []


def test_whole_bake_twice_changes_nothing(baked: Scratch) -> None:
    scratch = baked
    before, seen = scratch.snapshot(), len(scratch.calls())
    bake(scratch)
    assert scratch.snapshot() == before
    assert mutating(scratch.calls()[seen:]) == []


def _break_unit(s: Scratch) -> str:
    (s.root / "etc/systemd/system/nomad.service").unlink()
    return "MISSING: file /etc/systemd/system/nomad.service"


def _default_config_back(s: Scratch) -> str:
    (s.root / "etc/consul.d/consul.hcl").write_text("server = true\n")
    return "MISSING: no /etc/consul.d/consul.hcl (it exists)"


def _wrong_mode(s: Scratch) -> str:
    (s.root / "etc/nomad.d").chmod(0o755)
    return "MISSING: dir /etc/nomad.d as root root 0750 (is root root 0755)"


def _host_key(s: Scratch) -> str:
    (s.root / "etc/ssh/ssh_host_rsa_key").write_text("k")
    return "MISSING: no /etc/ssh/ssh_host_*"


def _machine_id(s: Scratch) -> str:
    (s.root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return "MISSING: empty /etc/machine-id"


def _agent_data(s: Scratch) -> str:
    (s.root / "opt/consul").mkdir(parents=True)
    return "MISSING: no /opt/consul (it exists)"


def _not_enabled(s: Scratch) -> str:
    data = s.state_data()
    data["enabled"].remove("firewalld.service")
    s.state.write_text(json.dumps(data))
    return "MISSING: firewalld.service enabled"


def _agent_enabled(s: Scratch) -> str:
    data = s.state_data()
    data["enabled"].append("consul.service")
    s.state.write_text(json.dumps(data))
    return "MISSING: consul.service not enabled (cloud-init enables it)"


def _running(s: Scratch) -> str:
    data = s.state_data()
    data["active"] = ["nomad.service"]
    s.state.write_text(json.dumps(data))
    return "MISSING: nomad.service not yet started (it is running)"


def _wrong_version(s: Scratch) -> str:
    data = s.state_data()
    data["installed"]["consul"] = "1.0.0"
    s.state.write_text(json.dumps(data))
    return f"MISSING: rpm consul {s.image.versions.consul} (have: 1.0.0)"


def _port_missing(s: Scratch) -> str:
    xml = s.root / "etc/firewalld/services/nomad.xml"
    xml.write_text(xml.read_text().replace('<port protocol="udp" port="4648"/>', ""))
    return "MISSING: firewalld service nomad with ports 4646/tcp 4647/tcp 4648/tcp 4648/udp"


def _permissive(s: Scratch) -> str:
    data = s.state_data()
    data["selinux"] = "Permissive"
    s.state.write_text(json.dumps(data))
    return "MISSING: SELinux enforcing now"


def _no_swap(s: Scratch) -> str:
    (s.root / "swapfile").unlink()
    return "MISSING: swap file /swapfile"


def _unlocked(s: Scratch) -> str:
    lock = s.root / "etc/dnf/plugins/versionlock.list"
    lock.write_text("".join(ln + "\n" for ln in lock.read_text().splitlines() if not ln.startswith("nomad-")))
    return f"MISSING: versionlock for nomad {s.image.versions.nomad}"


def _no_cni(s: Scratch) -> str:
    (s.root / "usr/libexec/cni/portmap").unlink()
    return "MISSING: executable /usr/libexec/cni/portmap"


def _no_serial_console(s: Scratch) -> str:
    grub = s.root / "etc/default/grub"
    grub.write_text(grub.read_text().replace(" console=ttyS0,115200n8", ""))
    return "MISSING: kernel argument console=ttyS0"


def _nocloud_only(s: Scratch) -> str:
    (s.root / "etc/cloud/cloud.cfg.d").mkdir(parents=True, exist_ok=True)
    (s.root / "etc/cloud/cloud.cfg.d/90-build.cfg").write_text("datasource_list: [ NoCloud, None ]\n")
    return "MISSING: cloud-init datasource Oracle allowed"


def _sysctl(s: Scratch) -> str:
    conf = s.root / "etc/sysctl.d/90-nomadic.conf"
    conf.write_text(conf.read_text().replace("32768 60999", "15000 60999"))
    return "MISSING: sysctl net.ipv4.ip_local_port_range = 32768 60999"


@pytest.mark.parametrize(
    "damage",
    [_break_unit, _default_config_back, _wrong_mode, _host_key, _machine_id, _agent_data, _not_enabled,
     _agent_enabled, _running, _wrong_version, _port_missing, _permissive, _no_swap, _unlocked, _no_cni,
     _no_serial_console, _nocloud_only, _sysctl],
)
def test_self_check_fails_the_bake_on_each_missing_fact(baked: Scratch, damage) -> None:
    # baked_once's own bake ended with 99-check-image.sh passing; this copy differs only by the damage.
    message = damage(baked)
    run = baked.run("99-check-image.sh")
    assert run.returncode == 1
    assert message in run.stderr, run.stderr
    assert "failing the bake" in run.stderr


def test_repository_without_gpg_checks_is_refused(scratch: Scratch) -> None:
    repo = scratch.root / "etc/yum.repos.d/hashicorp.repo"
    repo.write_text("[hashicorp]\nbaseurl=https://rpm.releases.hashicorp.com/RHEL/9/x86_64/stable\ngpgcheck=0\n")
    run = scratch.run("40-install-hashicorp.sh")
    assert run.returncode == 1 and "disables gpgcheck" in run.stderr
    assert not [c for c in scratch.calls() if c[0] == "dnf" and "install" in c]


def test_disabled_selinux_fails_the_bake(scratch: Scratch) -> None:
    scratch.state.write_text(json.dumps({"installed": {}, "enabled": [], "owners": {}, "active": [],
                                         "selinux": "Disabled"}))
    run = scratch.run("80-enforce-selinux.sh")
    assert run.returncode == 1 and "SELinux is disabled" in run.stderr


def test_permissive_config_is_set_back_to_enforcing(scratch: Scratch) -> None:
    cfg = scratch.root / "etc/selinux/config"
    cfg.write_text("SELINUX=permissive\nSELINUXTYPE=targeted\n")
    scratch.must("80-enforce-selinux.sh")
    assert "SELINUX=enforcing\n" in cfg.read_text() and "permissive" not in cfg.read_text()


def test_wait_gives_up_when_the_package_lock_stays_held(scratch: Scratch) -> None:
    lock = scratch.root / "var/lib/dnf/rpmdb_lock.pid"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))  # a live process holds it
    run = scratch.run("10-wait-boot.sh", WAIT_TIMEOUT_S="0")
    assert run.returncode == 1 and f"still held by pid {os.getpid()}" in run.stderr


def test_wait_ignores_a_stale_lock(scratch: Scratch) -> None:
    lock = scratch.root / "var/lib/dnf/rpmdb_lock.pid"
    lock.parent.mkdir(parents=True)
    lock.write_text("999999999")
    run = scratch.must("10-wait-boot.sh", WAIT_TIMEOUT_S="0")
    assert "no package manager running" in run.stderr


def test_zero_swap_means_no_swap_file(scratch: Scratch) -> None:
    scratch.must("15-create-swap.sh", SWAP_MB="0")
    assert not (scratch.root / "swapfile").exists()
    assert "/swapfile" not in (scratch.root / "etc/fstab").read_text()


def test_lost_cloud_init_fails_the_self_check(baked: Scratch) -> None:
    data = baked.state_data()
    del data["installed"]["cloud-init"]
    baked.state.write_text(json.dumps(data))
    run = baked.run("99-check-image.sh")
    assert run.returncode == 1 and "MISSING: package cloud-init" in run.stderr


def test_install_units_refuses_an_agent_running_during_the_bake(baked: Scratch) -> None:
    data = baked.state_data()
    data["active"] = ["consul.service"]
    baked.state.write_text(json.dumps(data))
    run = baked.run("50-install-units.sh")
    assert run.returncode == 1
    assert "consul.service is running during the bake" in run.stderr


def test_install_units_disables_agents_an_older_bake_enabled(baked: Scratch) -> None:
    """Units enabled in the image would start at multi-user.target, before runcmd has loaded the firewall zone."""
    data = baked.state_data()
    data["enabled"] += ["consul.service", "nomad.service"]
    baked.state.write_text(json.dumps(data))
    run = baked.run("50-install-units.sh")
    assert run.returncode == 0, run.stderr
    assert not {"consul.service", "nomad.service"} & set(baked.state_data()["enabled"])
