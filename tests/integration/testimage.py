"""Build (once, then cache) a small Debian 12 VM image that stands in for the baked AlmaLinux image in VM tests.

Its agent-related parts are made the way the bake makes them: the project's own provisioning scripts
(PROVISIONING: users, config dirs, tmpfiles.d, our units, firewalld services, kernel settings, identity cleanup)
run inside the image's root with the rendered nomadic-files, and the real Consul and Nomad binaries the test
agents build (tests/agents.py: older MPL-2.0 releases than the image pins) sit where the units expect them.
What is Debian's own (packages, cloud-init's unit ordering, the NoCloud-only datasource) is below. No Docker.
Run as a script to build it by hand: `python -m tests.integration.testimage`.
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

from nomadic import config, fsutil, imagedef, imagefacts, packer, proc

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


# The bake's scripts that apply to Debian, in bake order. Left out: 10 (waits for dnf), 20/30/40 (dnf packages:
# Debian's come from mmdebstrap, the agents from tests/agents.py, no Docker), 70 (swap: the VMs need none),
# 80 (SELinux), 99 (its rpm/SELinux/swap facts are AlmaLinux's; the VM test runs imagechecks instead).
PROVISIONING = ("45-prepare-dirs.sh", "50-install-units.sh", "60-install-firewalld.sh", "75-configure-kernel.sh",
                "90-clean-identity.sh")
STAGE = "/tmp/nomadic"  # scripts and nomadic-files inside the image root while the scripts run


def nomadic_files() -> dict[str, str]:
    """The bake's rendered nomadic-files/ (relative path -> text): units, firewalld XMLs, tmpfiles.d, sysctl.d ..."""
    settings = config.load({"local": {"accel": "tcg"}}, ROOT)
    image = imagedef.load(settings.build.image)
    ctx = packer.build_context(settings, image, (1, 6, 6), "tcg", "ssh-ed25519 AAAA testimage")
    ctx["banner"] = BANNER
    prefix = "nomadic-files/"
    return {k.removeprefix(prefix): v for k, v in packer.render_files(ctx).items() if k.startswith(prefix)}


def files() -> dict[str, tuple[str, int, str]]:
    """Debian-only files (not the bake's): path in the image -> (content, mode, owner:group)."""
    return {
        "etc/systemd/system/cloud-init.service": (CLOUD_INIT_SERVICE, 0o644, "root:root"),
        "etc/cloud/cloud.cfg.d/90-testimage.cfg": (CLOUD_CFG, 0o644, "root:root"),
        "etc/default/locale": ("LANG=C.UTF-8\n", 0o644, "root:root"),
        "etc/fstab": ("/dev/vda / ext4 rw,errors=remount-ro 0 1\n", 0o644, "root:root"),
    }


def agents() -> dict[str, Path]:
    """The test agents' binaries (tests/agents.py builds them first if needed): name -> path."""
    from tests import agents as test_agents

    return test_agents.find(build_missing=True)


# Commands run inside the image (chroot) after the bake's scripts.
CHROOT_STEPS = (
    ("systemctl", "enable", "systemd-networkd.service", "cloud-init.service"),
)


def recipe_hash(binaries: dict[str, Path] | None = None) -> str:
    recipe = {
        "suite": SUITE, "mirror": MIRROR, "packages": PACKAGES, "size": DISK_SIZE,
        "files": {k: list(v) for k, v in files().items()}, "steps": CHROOT_STEPS,
        "nomadic-files": nomadic_files(), "provisioning": PROVISIONING,
        "scripts": {s: (packer.SCRIPTS_DIR / s).read_text() for s in PROVISIONING},
        "agents": {name: fsutil.sha256_file(path) for name, path in sorted((binaries or {}).items())},
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TestImage:
    disk: Path  # qcow2 holding one ext4 file system (no partition table): root=/dev/vda
    kernel: Path
    initrd: Path
    append: str = "root=/dev/vda rw console=ttyS0"


def build(binaries: dict[str, Path], cache: Path = CACHE, log=None) -> TestImage:
    """The cached image for the current recipe and agents, building it first if needed (needs root, Debian's
    mirror)."""
    out = cache / recipe_hash(binaries)
    image = TestImage(out / "disk.qcow2", out / "vmlinuz", out / "initrd.img")
    if image.disk.is_file() and image.kernel.is_file() and image.initrd.is_file():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once: one builds, the other waits and reuses it
        if not (image.disk.is_file() and image.kernel.is_file() and image.initrd.is_file()):
            _build(cache, out, binaries, log)
    return image


def _provision(rootfs: Path, logfile: Path) -> None:
    """Run the bake's own scripts inside the image root, as Packer runs them on the build VM (as root, with the
    rendered nomadic-files), offline."""
    stage = rootfs / STAGE.lstrip("/")
    for rel, text in nomadic_files().items():
        path = stage / "nomadic-files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (stage / "scripts").mkdir(parents=True)
    for script in PROVISIONING:
        shutil.copy2(packer.SCRIPTS_DIR / script, stage / "scripts" / script)
    for script in PROVISIONING:
        # Offline: systemctl edits the root without talking to a systemd (SYSTEMD_OFFLINE), and the scripts leave
        # the running kernel (the host's) alone (NOMADIC_OFFLINE).
        proc.run(["chroot", str(rootfs), "env", f"NOMADIC_FILES={STAGE}/nomadic-files", "SYSTEMD_OFFLINE=1",
                  "NOMADIC_OFFLINE=1", "bash", f"{STAGE}/scripts/{script}"], log=logfile, step=f"test image: {script}")
    shutil.rmtree(stage)


def _build(cache: Path, out: Path, binaries: dict[str, Path], log) -> None:
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
    # The agents where the units expect them (the RPMs put them there on AlmaLinux).
    for name, dest in (("consul", imagefacts.CONSUL_BIN), ("nomad", imagefacts.NOMAD_BIN)):
        target = rootfs / dest.lstrip("/")
        shutil.copy2(binaries[name], target)
        target.chmod(0o755)
    _provision(rootfs, logfile)
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
    img = build(agents(), log=sys.stderr)
    print(textwrap.dedent(f"""\
        disk:   {img.disk}
        kernel: {img.kernel}
        initrd: {img.initrd}
        append: {img.append}"""))
