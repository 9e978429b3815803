"""Checks of a booted image, each a plain function over a `run(command) -> result` callable; [] means it holds.

`run` executes one shell command as root on the host (over SSH for verify-image; tests may pass anything with
`exit_code` and `stdout`). The checks read imagefacts, so they apply to any host built to the same facts, e.g.
the Debian test VMs of the local provider (binaries/versions and SELinux are AlmaLinux-only; see APPLICABLE_ANYWHERE).
"""

from __future__ import annotations

import re
import shlex
from typing import Callable, Protocol

from . import imagefacts as facts
from .imagedef import Versions

BUILD_INSTANCE_ID = facts.BUILD_INSTANCE_ID
# The RPMs' default configs start with this line; a node's real config (from cloud-init) does not.
RPM_DEFAULT_MARKER = "Full configuration options can be found at"


class Result(Protocol):
    exit_code: int
    stdout: str


Run = Callable[[str], Result]


def _out(run: Run, command: str) -> tuple[int, str]:
    r = run(command)
    return r.exit_code, r.stdout.strip()


def _stat(run: Run, path: str) -> str | None:
    code, out = _out(run, f"stat -c '%U %G %a %F' {shlex.quote(path)}")
    if code != 0:
        return None
    owner, group, mode, *kind = out.split()
    return f"{owner} {group} {int(mode, 8):04o} {' '.join(kind)}"


def _active(run: Run, unit: str) -> bool:
    return _out(run, f"systemctl is-active {unit}")[1] == "active"


def binaries(run: Run, versions: Versions | None = None) -> list[str]:
    """nomad, consul and docker are installed (at the pinned versions when given)."""
    problems = []
    checks = [
        (facts.NOMAD_BIN, "version", f"Nomad v{versions.nomad}" if versions else "Nomad v"),
        (facts.CONSUL_BIN, "version", f"Consul v{versions.consul}" if versions else "Consul v"),
        (facts.DOCKER_BIN, "--version", f"Docker version {versions.docker_ce}" if versions else "Docker version"),
    ]
    for path, arg, want in checks:
        code, out = _out(run, f"{path} {arg}")
        if code != 0:
            problems.append(f"{path} {arg} failed (exit {code})")
        elif want not in out:
            problems.append(f"{path} {arg} says {out.splitlines()[0] if out else 'nothing'!r}, expected {want!r}")
    return problems


def units(run: Run) -> list[str]:
    """Our units are the ones systemd loads; docker and firewalld enabled; consul and nomad neither enabled nor
    running until cloud-init has written their configs (on a configured node runcmd has enabled them)."""
    problems = []
    for unit in facts.ENABLED_UNITS:
        state = _out(run, f"systemctl is-enabled {unit}")[1]
        if state != "enabled":
            problems.append(f"{unit} is {state or 'unknown'}, expected enabled")
    for unit, config in (("consul.service", facts.CONSUL_CONFIG_FILE), ("nomad.service", facts.NOMAD_CONFIG_FILE)):
        state = _out(run, f"systemctl is-enabled {unit}")[1]
        configured = _out(run, f"test -s {config}")[0] == 0
        if not configured and state != "disabled":
            problems.append(f"{unit} is {state or 'unknown'} before {config} exists, expected disabled")
    for unit, path in ((facts.CONSUL_UNIT, facts.CONSUL_UNIT), (facts.NOMAD_UNIT, facts.NOMAD_UNIT)):
        name = path.rsplit("/", 1)[-1]
        fragment = _out(run, f"systemctl show -p FragmentPath --value {name}")[1]
        if fragment != path:
            problems.append(f"{name} is loaded from {fragment or 'nowhere'}, expected {path}")
    if _out(run, "systemctl show -p User --value consul.service")[1] != facts.CONSUL_USER:
        problems.append(f"consul.service does not run as {facts.CONSUL_USER}")
    for unit, score in (("nomad.service", facts.NOMAD_OOM_SCORE_ADJUST), ("consul.service", facts.CONSUL_OOM_SCORE_ADJUST)):
        if _out(run, f"systemctl show -p OOMScoreAdjust --value {unit}")[1] != str(score):
            problems.append(f"{unit} lacks OOMScoreAdjust={score}")
    for unit, config in (("consul.service", facts.CONSUL_CONFIG_FILE), ("nomad.service", facts.NOMAD_CONFIG_FILE)):
        configured = _out(run, f"test -s {config}")[0] == 0
        if not configured and _active(run, unit):
            problems.append(f"{unit} is running without {config}: it must wait for cloud-init")
    return problems


def directories(run: Run) -> list[str]:
    """Config dirs and (recreated at boot) data dirs with their owners and modes; data empty until an agent runs."""
    problems = []
    for fact in (*facts.CONFIG_DIRS, *facts.DATA_DIRS):
        got = _stat(run, fact.path)
        want = f"{fact.owner} {fact.group} {fact.mode_text} directory"
        if got != want:
            problems.append(f"{fact.path} is {got or 'missing'}, expected {want}")
    for fact, unit in ((facts.CONSUL_DATA_DIR, "consul.service"), (facts.NOMAD_DATA_DIR, "nomad.service")):
        if not _active(run, unit):
            listing = _out(run, f"ls -A {fact.path}")[1]
            if listing:
                problems.append(f"{fact.path} holds {listing.split()} although {unit} never ran: baked state")
    for path in facts.PACKAGE_DEFAULT_CONFIGS:
        if _out(run, f"grep -qs {shlex.quote(RPM_DEFAULT_MARKER)} {path}")[0] == 0:
            problems.append(f"{path} is the package's default config")
    return problems


def no_identity(run: Run, build_public_key: str | None = None) -> list[str]:
    """Nothing of the build VM's identity survived: this boot made its own machine-id, host keys, instance."""
    problems = []
    code, mid = _out(run, f"cat {facts.MACHINE_ID}")
    if code != 0 or not re.fullmatch(r"[0-9a-f]{32}", mid):
        problems.append(f"{facts.MACHINE_ID} holds {mid!r}, not a generated ID")
    instances = _out(run, "ls -A /var/lib/cloud/instances")[1].split()
    if BUILD_INSTANCE_ID in instances:
        problems.append("cloud-init state of the build instance is still there")
    if len(instances) != 1:
        problems.append(f"/var/lib/cloud/instances holds {instances}, expected exactly this instance")
    # Host keys made by this clone postdate everything the bake wrote; keys from the build VM's first boot
    # predate our unit file (installed later in the bake). A fixed file, unlike cloud-init's dirs, whose
    # mtimes move on every boot.
    code, since = _out(run, f"stat -c %Y {facts.CONSUL_UNIT}")
    keys = _out(run, "stat -c '%Y %n' /etc/ssh/ssh_host_*_key")[1].splitlines()
    if not keys:
        problems.append("no SSH host keys: the clone did not generate its own")
    for line in keys:
        mtime, name = line.split(" ", 1)
        if code == 0 and since.isdigit() and int(mtime) < int(since):
            problems.append(f"{name} is older than {facts.CONSUL_UNIT}, which the bake wrote: baked into the image")
    if build_public_key:
        key = build_public_key.split()[1]
        code, out = _out(run, f"grep -ls {shlex.quote(key)} /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys")
        if code == 0 and out:
            problems.append(f"the build's login key is still authorized in {out.split()}")
    return problems


def selinux(run: Run) -> list[str]:
    mode = _out(run, "getenforce")[1]
    return [] if mode == "Enforcing" else [f"SELinux is {mode or 'unknown'}, expected Enforcing"]


def swap(run: Run, size_mb: int | None = None) -> list[str]:
    if size_mb == 0:
        return []
    out = _out(run, "swapon --show=NAME,SIZE --bytes --noheadings")[1]
    sizes = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    if facts.SWAP_FILE not in sizes:
        return [f"{facts.SWAP_FILE} is not in use as swap (active: {list(sizes) or 'none'})"]
    if size_mb and int(sizes[facts.SWAP_FILE]) < (size_mb - 1) * 1024 * 1024:
        return [f"{facts.SWAP_FILE} is {int(sizes[facts.SWAP_FILE]) >> 20} MiB, expected {size_mb}"]
    return []


def firewalld_services(run: Run) -> list[str]:
    problems = []
    for name, ports in facts.FIREWALLD_SERVICES.items():
        code, out = _out(run, f"firewall-cmd --permanent --info-service={name} || firewall-offline-cmd --info-service={name}")
        got = set()
        for line in out.splitlines():
            if line.strip().startswith("ports:"):
                got = set(line.split(":", 1)[1].split())
        want = {f"{p.port}/{p.protocol}" for p in ports}
        if code != 0 or got != want:
            problems.append(f"firewalld service {name} has ports {sorted(got)}, expected {sorted(want)}")
    return problems


def sysctls(run: Run) -> list[str]:
    problems = []
    for key, want in facts.SYSCTLS.items():
        got = " ".join(_out(run, f"sysctl -n {key}")[1].split())
        if got != want:
            problems.append(f"sysctl {key} = {got or 'unset'}, expected {want}")
    return problems


def pins_locked(run: Run, versions: Versions) -> list[str]:
    """docker-ce, docker-ce-cli, nomad and consul are versionlocked at their pins (a dnf upgrade keeps them)."""
    locks = _out(run, f"cat {facts.VERSIONLOCK_LIST}")[1]
    pins = {"docker-ce": versions.docker_ce, "docker-ce-cli": versions.docker_ce, "nomad": versions.nomad,
            "consul": versions.consul}
    return [
        f"{name} is not versionlocked at {version} in {facts.VERSIONLOCK_LIST}"
        for name, version in pins.items()
        if not re.search(rf"^{re.escape(name)}-([0-9]+:)?{re.escape(version)}-", locks, re.M)
    ]


def cni_plugins(run: Run) -> list[str]:
    """The CNI plugins Nomad's bridge networking uses are where the client's cni_path points."""
    return [
        f"CNI plugin {facts.CNI_DIR}/{p} is missing"
        for p in facts.CNI_PLUGINS
        if _out(run, f"test -x {facts.CNI_DIR}/{p}")[0] != 0
    ]


def oci_boot(run: Run) -> list[str]:
    """What OCI needs of a (possibly imported) image: serial console, eth0 naming, generic initramfs, cloud-init."""
    cmdline = _out(run, "cat /proc/cmdline")[1].split()
    problems = [
        f"kernel argument {arg} is not on the command line"
        for arg in facts.OCI_BOOT_KERNEL_ARGS
        if not any(word == arg or word.startswith(arg + ",") for word in cmdline)
    ]
    for name in facts.OCI_BOOT_PACKAGES:
        if _out(run, f"rpm -q {name}")[0] != 0:
            problems.append(f"package {name} is not installed")
    return problems


ALL: dict[str, Callable[..., list[str]]] = {
    "binaries": binaries,
    "units": units,
    "directories": directories,
    "no_identity": no_identity,
    "selinux": selinux,
    "swap": swap,
    "firewalld_services": firewalld_services,
    "sysctls": sysctls,
    "pins_locked": pins_locked,
    "cni_plugins": cni_plugins,
    "oci_boot": oci_boot,
}
# Checks that hold on any host built to imagefacts, not only on the AlmaLinux image (e.g. Debian test VMs).
APPLICABLE_ANYWHERE = ("directories", "no_identity", "firewalld_services")
