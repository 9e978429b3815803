"""The image checks' own logic, against a scripted host (what a healthy fresh clone answers), and verify-image's
plumbing: it runs tests/image over ssh and reports a host it cannot reach as a failure, not a pass."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from nomadic import config, imagebuild, imagechecks, imagedef, imagefacts

from packer_support import require_tool

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Answer:
    exit_code: int
    stdout: str


def healthy() -> dict[str, Answer]:
    v = imagedef.load("almalinux9").versions
    a: dict[str, Answer] = {
        f"{imagefacts.NOMAD_BIN} version": Answer(0, f"Nomad v{v.nomad}\nBuildDate 2025-07-01\n"),
        f"{imagefacts.CONSUL_BIN} version": Answer(0, f"Consul v{v.consul}\nRevision abc\n"),
        f"{imagefacts.DOCKER_BIN} --version": Answer(0, f"Docker version {v.docker_ce}, build 1\n"),
        "systemctl show -p FragmentPath --value consul.service": Answer(0, imagefacts.CONSUL_UNIT),
        "systemctl show -p FragmentPath --value nomad.service": Answer(0, imagefacts.NOMAD_UNIT),
        "systemctl show -p User --value consul.service": Answer(0, "consul"),
        "systemctl show -p OOMScoreAdjust --value nomad.service": Answer(0, "-1000"),
        "systemctl show -p OOMScoreAdjust --value consul.service": Answer(0, "-900"),
        f"cat {imagefacts.MACHINE_ID}": Answer(0, "4f1c2b7d9e8a4c3b8f0e1d2c3b4a5968\n"),
        "ls -A /var/lib/cloud/instances": Answer(0, "ocid1.instance.oc1.eu-frankfurt-1.abc\n"),
        f"stat -c %Y {imagefacts.CONSUL_UNIT}": Answer(0, "1000\n"),
        "stat -c '%Y %n' /etc/ssh/ssh_host_*_key": Answer(0, "1010 /etc/ssh/ssh_host_ed25519_key\n"),
        "getenforce": Answer(0, "Enforcing\n"),
        "swapon --show=NAME,SIZE --bytes --noheadings": Answer(0, f"/swapfile {1024 * 1024 * 1024}\n"),
    }
    for unit in imagefacts.ENABLED_UNITS:
        a[f"systemctl is-enabled {unit}"] = Answer(0, "enabled\n")
    for unit in ("consul.service", "nomad.service"):
        a[f"systemctl is-enabled {unit}"] = Answer(1, "disabled\n")
        a[f"systemctl is-active {unit}"] = Answer(3, "inactive\n")
    for path in (imagefacts.CONSUL_CONFIG_FILE, imagefacts.NOMAD_CONFIG_FILE):
        a[f"test -s {path}"] = Answer(1, "")
    for fact in (*imagefacts.CONFIG_DIRS, *imagefacts.DATA_DIRS):
        a[f"stat -c '%U %G %a %F' {fact.path}"] = Answer(0, f"{fact.owner} {fact.group} {fact.mode:o} directory\n")
        a[f"ls -A {fact.path}"] = Answer(0, "")
    for name, ports in imagefacts.FIREWALLD_SERVICES.items():
        listing = " ".join(f"{p.port}/{p.protocol}" for p in ports)
        a[f"firewall-cmd --permanent --info-service={name} || firewall-offline-cmd --info-service={name}"] = Answer(
            0, f"{name}\n  ports: {listing}\n  protocols:\n"
        )
    for key, value in imagefacts.SYSCTLS.items():
        a[f"sysctl -n {key}"] = Answer(0, value.replace(" ", "\t") + "\n")
    a[f"cat {imagefacts.VERSIONLOCK_LIST}"] = Answer(0, "".join(
        f"{n}-{e}:{ver}-1.el9.*\n" for n, e, ver in [("docker-ce", 3, v.docker_ce), ("docker-ce-cli", 1, v.docker_ce),
                                                     ("nomad", 0, v.nomad), ("consul", 0, v.consul)]))
    for plugin in imagefacts.CNI_PLUGINS:
        a[f"test -x /usr/libexec/cni/{plugin}"] = Answer(0, "")
    a["cat /proc/cmdline"] = Answer(0, "BOOT_IMAGE=(hd0,gpt3)/vmlinuz root=UUID=x ro console=tty0 "
                                       "console=ttyS0,115200n8 no_timer_check net.ifnames=0\n")
    for name in ("dracut-config-generic", "cloud-init"):
        a[f"rpm -q {name}"] = Answer(0, f"{name}-1.el9.noarch\n")
    return a


class Host:
    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers

    def __call__(self, command: str) -> Answer:
        if command.startswith("grep "):
            return Answer(1, "")  # no default config, no build key
        return self.answers.get(command, Answer(127, ""))


def test_a_healthy_clone_passes_every_check() -> None:
    host = Host(healthy())
    image = imagedef.load("almalinux9")
    assert imagechecks.binaries(host, image.versions) == []
    assert imagechecks.units(host) == []
    assert imagechecks.directories(host) == []
    assert imagechecks.no_identity(host, "ssh-ed25519 AAAAbuild nomadic-build") == []
    assert imagechecks.selinux(host) == []
    assert imagechecks.swap(host, image.swap_mb) == []
    assert imagechecks.firewalld_services(host) == []
    assert imagechecks.sysctls(host) == []
    assert imagechecks.pins_locked(host, image.versions) == []
    assert imagechecks.cni_plugins(host) == []
    assert imagechecks.oci_boot(host) == []


@pytest.mark.parametrize(
    ("command", "answer", "check", "message"),
    [
        (f"{imagefacts.NOMAD_BIN} version", Answer(0, "Nomad v1.9.0"), "binaries", "expected 'Nomad v1.10.3'"),
        ("systemctl is-active consul.service", Answer(0, "active"), "units", "running without /etc/consul.d/consul.hcl"),
        ("systemctl is-enabled firewalld.service", Answer(1, "disabled"), "units", "firewalld.service is disabled"),
        ("systemctl is-enabled nomad.service", Answer(0, "enabled"), "units",
         "nomad.service is enabled before /etc/nomad.d/nomad.hcl exists, expected disabled"),
        ("systemctl show -p OOMScoreAdjust --value consul.service", Answer(0, "0"), "units",
         "consul.service lacks OOMScoreAdjust=-900"),
        ("systemctl show -p FragmentPath --value nomad.service", Answer(0, "/usr/lib/systemd/system/nomad.service"),
         "units", "loaded from /usr/lib/systemd/system/nomad.service"),
        ("stat -c '%U %G %a %F' /etc/consul.d", Answer(0, "root root 755 directory"), "directories",
         "/etc/consul.d is root root 0755 directory, expected root consul 0750 directory"),
        ("ls -A /opt/consul", Answer(0, "node-id\nraft"), "directories", "/opt/consul holds ['node-id', 'raft']"),
        (f"cat {imagefacts.MACHINE_ID}", Answer(0, ""), "no_identity", "not a generated ID"),
        ("ls -A /var/lib/cloud/instances", Answer(0, "nomadic-build i-1"), "no_identity", "build instance"),
        ("stat -c '%Y %n' /etc/ssh/ssh_host_*_key", Answer(0, "10 /etc/ssh/ssh_host_rsa_key"), "no_identity",
         "ssh_host_rsa_key is older than /etc/systemd/system/consul.service"),
        ("stat -c '%Y %n' /etc/ssh/ssh_host_*_key", Answer(1, ""), "no_identity", "no SSH host keys"),
        ("getenforce", Answer(0, "Permissive"), "selinux", "SELinux is Permissive"),
        ("swapon --show=NAME,SIZE --bytes --noheadings", Answer(0, ""), "swap", "/swapfile is not in use"),
        ("firewall-cmd --permanent --info-service=nomad || firewall-offline-cmd --info-service=nomad",
         Answer(0, "nomad\n  ports: 4646/tcp\n"), "firewalld_services", "firewalld service nomad has ports"),
        ("sysctl -n net.ipv4.ip_local_port_range", Answer(0, "15000\t60999"), "sysctls",
         "ip_local_port_range = 15000 60999, expected 32768 60999"),
        (f"cat {imagefacts.VERSIONLOCK_LIST}", Answer(0, "nomad-0:1.10.3-1.el9.*\n"), "pins_locked",
         "consul is not versionlocked at 1.21.4"),
        ("test -x /usr/libexec/cni/bridge", Answer(1, ""), "cni_plugins", "/usr/libexec/cni/bridge is missing"),
        ("cat /proc/cmdline", Answer(0, "root=UUID=x ro console=tty0"), "oci_boot",
         "kernel argument console=ttyS0 is not on the command line"),
        ("rpm -q cloud-init", Answer(1, "package cloud-init is not installed"), "oci_boot",
         "package cloud-init is not installed"),
    ],
)
def test_each_check_reports_what_is_wrong(command: str, answer: Answer, check: str, message: str) -> None:
    answers = healthy()
    answers[command] = answer
    versions = imagedef.load("almalinux9").versions
    args = {"binaries": (versions,), "pins_locked": (versions,), "swap": (1024,)}.get(check, ())
    problems = imagechecks.ALL[check](Host(answers), *args)
    assert any(message in p for p in problems), problems


def test_verify_argv_passes_the_target_to_pytest(tmp_path: Path) -> None:
    s = config.load({}, tmp_path)
    argv = imagebuild.verify_argv(s, "10.0.0.5", 2222, None, "~/.ssh/k")
    assert argv[1:4] == ["-m", "pytest", str(ROOT / "tests" / "image")]
    assert "--host=10.0.0.5" in argv and "--port=2222" in argv and "--user=opc" in argv
    assert f"--key={Path('~/.ssh/k').expanduser()}" in argv and "--image-def=almalinux9" in argv


def test_verify_image_fails_for_an_unreachable_host(tmp_path: Path) -> None:
    """Loopback only: a port nobody listens on. The suite must fail (not skip) and the task say so in one line."""
    require_tool("ssh")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed; nothing listens there
    root = tmp_path / "project"
    root.mkdir()
    (root / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    run = subprocess.run(
        [str(ROOT / ".venv/bin/invoke"), "-r", str(root), "verify-image", "--host", "127.0.0.1", "--port", str(port),
         "--key", str(tmp_path / "nokey")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert run.returncode != 0
    assert "cannot run commands as root on opc@127.0.0.1" in run.stderr + run.stdout
    assert "error: image verification failed" in run.stderr and "Traceback" not in run.stderr.split("error:")[-1]
