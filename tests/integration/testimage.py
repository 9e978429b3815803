"""Build (once, then cache) a small Debian 12 VM image that stands in for the baked AlmaLinux image in VM tests.

It has what the real image provides around the agents -- the consul user, /etc/consul.d and /etc/nomad.d with
their owners and modes, tmpfiles.d for /opt/consul and /opt/nomad, firewalld with `consul` and `nomad`
services, cloud-init, sshd -- but NOT Consul or Nomad: those are stand-in units that only record that systemd
started them and in which order. Run as a script to build it by hand: `python -m tests.integration.testimage`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from nomadic import imagefacts, proc, render

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "testimage"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DISK_SIZE = "2G"

PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "cloud-init", "openssh-server", "linux-image-cloud-amd64",
    "initramfs-tools", "firewalld", "sudo", "iproute2", "iputils-ping", "procps", "netbase", "python3",
    # resize2fs for cloud-init's resizefs; myhostname resolves the node's own name as on RHEL (sudo needs it).
    "e2fsprogs", "libnss-myhostname",
)

# Debian's cloud-init.service says DefaultDependencies=no, After=systemd-networkd-wait-online.service and
# Before=sysinit.target. firewalld.service (default dependencies: After=sysinit.target) is Before=network-pre.target,
# which systemd-networkd (and so networkd-wait-online) comes after: cloud-init.service -> ... -> firewalld ->
# sysinit.target -> cloud-init.service is a cycle, and systemd breaks it by silently dropping cloud-init.service,
# so the network stage never runs and no user-data is applied. RHEL/AlmaLinux (where firewalld is standard)
# build this unit with default dependencies and without Before=sysinit.target; we use that ordering. A drop-in
# cannot remove a Before= (systemd cannot reset dependency lists), so this replaces the whole unit in /etc.
CLOUD_INIT_SERVICE = """\
[Unit]
Description=Initial cloud-init job (metadata service crawler), ordered as on RHEL (see the test image recipe)
Wants=cloud-init-local.service
Wants=sshd-keygen.service
Wants=sshd.service
After=cloud-init-local.service
After=systemd-networkd-wait-online.service
After=NetworkManager-wait-online.service
Before=network-online.target
Before=sshd-keygen.service
Before=sshd.service
Before=systemd-user-sessions.service
Conflicts=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/bin/cloud-init init
RemainAfterExit=yes
TimeoutSec=0
StandardOutput=journal+console

[Install]
WantedBy=cloud-init.target
"""

# The stand-ins keep the real units' [Unit] and [Install] sections (conditions, ordering) from packer/files/ and
# replace [Service]: no binary runs, each start appends "<name> <time> <user>" to a log.
STANDIN_SERVICE = """\
[Service]
Type=oneshot
RemainAfterExit=yes
User={user}
# STAND-IN (test image): there is no {name} binary here; this only records that systemd started the unit.
# systemd: "$$" is a literal "$", "%%" a literal "%".
ExecStart=/bin/sh -c 'echo "{name} $$(date +%%s.%%N) $$(id -un)" >> /run/standin-order/log'

"""
STANDIN_LOG = "/run/standin-order/log"
BANNER = "test image for the VM tests (tests/integration/testimage.py)"

CLOUD_CFG = """\
# Only the NoCloud seed exists in these VMs; skip probing cloud metadata services.
datasource_list: [NoCloud, None]
# Debian's minimal system has no `locales` (update-locale, locale-gen): keep the C.UTF-8 the image already has
# (/etc/default/locale), which cloud-init's locale module then leaves alone.
locale: C.UTF-8
# RSA and DSA host key generation takes tens of seconds under emulation; the VM tests log in with ed25519.
ssh_genkeytypes: [ed25519]
"""


def _render(template: str, **context: object) -> str:
    """A template of the real image (packer/files/), rendered with the facts the bake uses."""
    return render.render(f"files/{template}", {"banner": BANNER, "facts": imagefacts, **context})


def standin_unit(name: str, user: str) -> str:
    real = _render(f"{name}.service.j2")
    head, rest = real.split("[Service]", 1)
    install = rest[rest.index("[Install]"):]
    return head + STANDIN_SERVICE.format(name=name, user=user) + install


def tmpfiles() -> str:
    # The stand-ins' log directory, writable by the consul user, beside the image's own data dirs.
    return _render("tmpfiles.conf.j2") + "d /run/standin-order 0777 root root -\n"


def files() -> dict[str, tuple[str, int, str]]:
    """Path in the image -> (content, mode, owner:group)."""
    out = {
        "etc/systemd/system/cloud-init.service": (CLOUD_INIT_SERVICE, 0o644, "root:root"),
        imagefacts.CONSUL_UNIT.lstrip("/"): (standin_unit("consul", imagefacts.CONSUL_USER), 0o644, "root:root"),
        imagefacts.NOMAD_UNIT.lstrip("/"): (standin_unit("nomad", "root"), 0o644, "root:root"),
        imagefacts.TMPFILES_CONF.lstrip("/"): (tmpfiles(), 0o644, "root:root"),
        "etc/cloud/cloud.cfg.d/90-testimage.cfg": (CLOUD_CFG, 0o644, "root:root"),
        "etc/default/locale": ("LANG=C.UTF-8\n", 0o644, "root:root"),
        "etc/fstab": ("/dev/vda / ext4 rw,errors=remount-ro 0 1\n", 0o644, "root:root"),
    }
    for service, ports in imagefacts.FIREWALLD_SERVICES.items():
        out[f"{imagefacts.FIREWALLD_SERVICE_DIR.lstrip('/')}/{service}.xml"] = (
            _render("firewalld-service.xml.j2", service=service, ports=ports), 0o644, "root:root")
    return out


# Commands run inside the image (chroot) after the files are in place.
CHROOT_STEPS = (
    ("useradd", "--system", "--home-dir", imagefacts.CONSUL_CONFIG_DIR.path, "--no-create-home", "--shell",
     "/bin/false", imagefacts.CONSUL_USER),
    *(("install", "-d", "-o", d.owner, "-g", d.group, "-m", d.mode_text, d.path) for d in imagefacts.CONFIG_DIRS),
    ("systemctl", "enable", "systemd-networkd.service", "firewalld.service", "consul.service", "nomad.service",
     "cloud-init.service"),
    # A clone must not share a machine-id (empty: generated on first boot) or SSH host keys (cloud-init makes them).
    ("truncate", "-s", "0", "/etc/machine-id"),
    ("find", "/etc/ssh", "-name", "ssh_host_*", "-delete"),
)


def recipe_hash() -> str:
    recipe = {
        "suite": SUITE, "mirror": MIRROR, "packages": PACKAGES, "size": DISK_SIZE,
        "files": {k: list(v) for k, v in files().items()}, "steps": CHROOT_STEPS,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TestImage:
    disk: Path  # qcow2 holding one ext4 file system (no partition table): root=/dev/vda
    kernel: Path
    initrd: Path
    append: str = "root=/dev/vda rw console=ttyS0"


def build(cache: Path = CACHE, log=None) -> TestImage:
    """The cached image for the current recipe, building it first if needed (needs root and Debian's mirror)."""
    out = cache / recipe_hash()
    image = TestImage(out / "disk.qcow2", out / "vmlinuz", out / "initrd.img")
    if image.disk.is_file() and image.kernel.is_file() and image.initrd.is_file():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once: one builds, the other waits and reuses it
        if not (image.disk.is_file() and image.kernel.is_file() and image.initrd.is_file()):
            _build(cache, out, log)
    return image


def _build(cache: Path, out: Path, log) -> None:
    if os.geteuid() != 0:
        raise RuntimeError("building the test image needs root (mmdebstrap --mode=root, chroot, file owners)")
    work = cache / f"{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    work.mkdir(parents=True)
    logfile = work / "build.log"
    proc.run(
        ["mmdebstrap", "--mode=root", "--variant=apt", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs),
         MIRROR],
        stream=log, log=logfile, step="mmdebstrap (test image)", timeout=1800,
    )
    for rel, (content, mode, owner) in files().items():
        target = rootfs / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        target.chmod(mode)
        user, group = owner.split(":")
        shutil.chown(target, user, group)
    for step in CHROOT_STEPS:
        proc.run(["chroot", str(rootfs), *step], log=logfile, step=f"test image: {step[0]}")
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel/initrd in {rootfs / 'boot'}; see {logfile}")
    shutil.copy2(kernels[-1], work / "vmlinuz")
    shutil.copy2(initrds[-1], work / "initrd.img")
    raw = work / "disk.raw"
    proc.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw), DISK_SIZE], log=logfile,
             step="mkfs.ext4 (test image)")
    proc.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
             log=logfile, step="qemu-img convert (test image)")
    raw.unlink()
    shutil.rmtree(rootfs)
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    # Old recipes' images are dead weight.
    for other in cache.iterdir():
        if other != out and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


if __name__ == "__main__":
    img = build(log=sys.stderr)
    print(textwrap.dedent(f"""\
        disk:   {img.disk}
        kernel: {img.kernel}
        initrd: {img.initrd}
        append: {img.append}"""))
