"""The local provider: the cluster's nodes as QEMU VMs on this machine, booted from the same image with NoCloud seeds.

Each node gets a copy-on-write overlay on the image, a seed ISO with its rendered user-data (unchanged), an SSH
forward on 127.0.0.1 and a NIC on the cluster network: QEMU UDP sockets on loopback joined by nomadic.hub.
Everything a node is lives in build/<cluster>/local/<node>/ (overlay.qcow2, seed.iso, serial.log, pid, vm.json);
status and destroy find the VMs from those records and check /proc before they touch a pid.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .. import accel, artifacts, keys, proc, qemuargs, seediso
from ..config import Accel, Settings, Target
from ..fsutil import write_text_atomic
from ..errors import ConfigError, NomadicError, ProviderError, ToolMissing
from ..plan import Node, Plan, Role
from .base import NodeStatus, Progress

LOCAL_DIR = "local"
VM_RECORD = "vm.json"
HUB_RECORD = "hub.json"
QEMU_IMG = "qemu-img"
QCOW2_MAGIC = b"QFI\xfb"
SERIAL_TAIL_LINES = 25
SSH_POLL_S = 2.0  # between rounds of "does sshd answer yet" while VMs boot
RUNNING = "RUNNING"
STOPPED = "STOPPED"  # qemu is gone; the node's files (disk, serial log) remain until destroy


@dataclass(frozen=True)
class VmRecord:
    """What launch wrote about one VM (vm.json): enough for status and destroy without asking anyone else."""

    name: str
    index: int
    role: str
    address: str
    pid: int
    ssh_port: int
    cluster_port: int
    hub_port: int
    overlay: str
    seed: str
    serial_log: str
    image: str
    accel: str
    ssh_user: str = ""  # the login user at launch (local.ssh_user then)


def serial_tail(path: Path, lines: int = SERIAL_TAIL_LINES) -> str:
    """The last lines of a serial log, printable, for an error message."""
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return "(no serial output)"
    text = data.decode("utf-8", "replace").replace("\r", "")
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join(kept) if kept else "(no serial output)"


def _port_free(kind: socket.SocketKind, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((qemuargs.LOOPBACK, port))
        except OSError:
            return False
    return True


def tcp_port_free(port: int) -> bool:
    return _port_free(socket.SOCK_STREAM, port)


def udp_port_free(port: int) -> bool:
    return _port_free(socket.SOCK_DGRAM, port)


def ssh_banner(port: int, timeout: float = 5.0) -> bool:
    """Whether sshd answers through the forward (slirp accepts the connection even when the guest does not)."""
    try:
        with socket.create_connection((qemuargs.LOOPBACK, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def is_qcow2(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == QCOW2_MAGIC
    except OSError as exc:
        raise ConfigError(f"image {path} cannot be read ({exc.strerror})", hint="check its permissions") from None


class LocalProvider:
    """config.Provider.LOCAL: QEMU VMs under build/<cluster>/local/."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.local = settings.local
        self.root = settings.cluster_dir / LOCAL_DIR
        self._accel: Accel | None = None

    # -- records -------------------------------------------------------------------------------------------

    def node_dir(self, name: str) -> Path:
        return self.root / name

    def records(self) -> list[VmRecord]:
        out = []
        for path in sorted(self.root.glob(f"*/{VM_RECORD}")):
            try:
                out.append(VmRecord(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                raise ProviderError(
                    f"{path} is unreadable ({exc})",
                    hint="stop its qemu by hand if it still runs, then delete the folder",
                ) from None
        return out

    def _write_record(self, record: VmRecord) -> None:
        write_text_atomic(self.node_dir(record.name) / VM_RECORD, json.dumps(asdict(record), indent=2) + "\n")

    @staticmethod
    def running(record: VmRecord) -> bool:
        return record.pid > 0 and proc.is_ours(record.pid, "qemu-system", record.overlay)

    def _status(self, record: VmRecord) -> NodeStatus:
        return NodeStatus(
            name=record.name,
            role=Role(record.role),
            state=RUNNING if self.running(record) else STOPPED,
            id=str(record.pid),
            private_ip=record.address,
            public_ip="",
            ssh_host=qemuargs.LOOPBACK,
            ssh_port=record.ssh_port,
            ssh_user=record.ssh_user or self.local.ssh_user,
        )

    # -- the Provider protocol -----------------------------------------------------------------------------

    def preflight(self, image: str | None) -> str:
        """QEMU installed, image present and qcow2, kernel files present, SSH key readable; returns the image path."""
        try:
            proc.which(self.local.qemu)
        except ToolMissing as exc:
            raise ToolMissing(
                f"{exc.message} (setting local.qemu)", hint=proc.INSTALL_HINTS["qemu-system-x86_64"]
            ) from None
        proc.which(QEMU_IMG)
        path = self._image_path(image)
        for key in ("kernel", "initrd"):
            value = getattr(self.local, key)
            if value and not Path(value).expanduser().is_file():
                raise ConfigError(f"setting local.{key} = {value!r}: no such file", hint="give an existing file or leave it empty")
        if self.local.initrd and not self.local.kernel:
            raise ConfigError("setting local.initrd is set but local.kernel is empty", hint="set both or neither")
        self._public_key()
        qemuargs.user_net(self.settings.cluster.cidr)  # raises when cluster.cidr overlaps every user-mode net
        return str(path)

    def find(self) -> list[NodeStatus]:
        return [self._status(r) for r in self.records()]

    def used_addresses(self) -> set[str]:
        # The cluster network is this cluster's own loopback segment: nothing else holds addresses on it.
        return set()

    def launch(
        self, plan: Plan, nodes: list[Node], user_data: Mapping[str, str], image: str | None, progress: Progress
    ) -> list[NodeStatus]:
        base = Path(self.preflight(image))
        if not nodes:
            return []
        missing = [n.name for n in nodes if n.name not in user_data]
        if missing:
            raise ProviderError(f"no user-data for {', '.join(missing)}", hint="render the nodes before launch")
        existing = {r.name: r for r in self.records()}
        for node in nodes:
            old = existing.get(node.name)
            if old is not None and self.running(old):
                raise ProviderError(f"node {node.name} already runs (pid {old.pid})", hint="invoke status --provider local")
        self._check_ports([(n.name, *self.ports(n)) for n in nodes])
        accel = self._resolve_accel(progress)
        public_key = self._public_key()
        started: list[VmRecord] = []
        try:
            specs = []
            for node in nodes:
                shutil.rmtree(self.node_dir(node.name), ignore_errors=True)  # a terminated VM's leftovers
                specs.append((node, self._prepare(plan, node, user_data[node.name], base, public_key, progress)))
            keep = [r for r in existing.values() if r.name not in {n.name for n in nodes}]
            self._ensure_hub([r.cluster_port for r in keep] + [s.cluster_port for _, s in specs])
            for node, spec in specs:
                record = self._start(node, spec, base, accel, progress)
                started.append(record)
            self._wait_booted(started, progress)
        except BaseException as exc:
            self._undo(started, [n for n in nodes], progress, keep_serial=isinstance(exc, NomadicError))
            raise
        return [self._status(r) for r in started]

    def ensure_network(self, prepared: Any, progress: Progress) -> None:
        """Nothing to do: the hub and each VM's firewalld zone are set up when the VMs boot."""

    def start(self, nodes: list[NodeStatus], progress: Progress) -> list[NodeStatus]:
        """Boot stopped VMs again from their own overlay and seed (disk state kept), as launch boots them."""
        if not nodes:
            return []
        records = {r.name: r for r in self.records()}
        todo: list[VmRecord] = []
        for node in nodes:
            record = records.get(node.name)
            if record is None:
                raise ProviderError(f"node {node.name}: no local record to start it from", hint="invoke destroy --provider local, then launch")
            if self.running(record):
                continue  # it came back meanwhile
            for path in (record.overlay, record.seed):
                if not Path(path).is_file():
                    raise ProviderError(
                        f"node {node.name}: {path} is missing; the VM cannot be booted again",
                        hint="invoke destroy --provider local, then launch to recreate it",
                    )
            todo.append(record)
        self._check_ports([(r.name, r.ssh_port, r.cluster_port) for r in todo])
        accel = self._resolve_accel(progress)
        self._ensure_hub([r.cluster_port for r in records.values()])
        started: list[VmRecord] = []
        try:
            for record in todo:
                started.append(self._boot(record, self._spec(record.name, record.index, record.ssh_port, record.cluster_port), accel, progress))
            self._wait_booted(started, progress)
        except BaseException:
            for record in started:  # back to STOPPED: disks stay, only the qemu this start ran goes
                try:
                    self._stop(record, progress)
                except NomadicError as exc:
                    print(f"warning: {exc}", file=sys.stderr)
            if not any(self.running(r) for r in self.records()):
                self._stop_hub()
            raise
        fresh = {r.name: r for r in self.records()}
        return [self._status(fresh[n.name]) for n in nodes]

    def destroy(self, nodes: list[NodeStatus], progress: Progress) -> None:
        records = {r.name: r for r in self.records()}
        for node in nodes:
            record = records.get(node.name)
            if record is None:
                progress(node.name, "no local record; nothing to stop")
                continue
            self._stop(record, progress)
            shutil.rmtree(self.node_dir(record.name), ignore_errors=True)
            progress(record.name, "destroyed")
        if not any(self.running(r) for r in self.records()):
            self._stop_hub()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- steps ---------------------------------------------------------------------------------------------

    def _image_path(self, image: str | None) -> Path:
        if image:
            path, source = Path(image).expanduser().resolve(), "--image"
        else:
            found = artifacts.lookup(self.settings, Target.QEMU)
            if not found or not found.get("path"):
                raise ConfigError(
                    f"no qcow2 image recorded for {self.settings.build.image} in {artifacts.path(self.settings)}",
                    hint="run 'invoke build-image --target qemu' first, or pass --image PATH",
                )
            path, source = Path(found["path"]).expanduser(), f"the image build-image recorded ({artifacts.path(self.settings)})"
        if not path.is_file():
            raise ConfigError(f"image {path} does not exist ({source})", hint="run 'invoke build-image --target qemu' or pass --image PATH")
        if not is_qcow2(path):
            raise ConfigError(f"image {path} is not a qcow2 file", hint="convert it: qemu-img convert -O qcow2 IN OUT")
        return path

    def _public_key(self) -> str:
        return keys.ssh_public_key(self.settings)

    def ports(self, node: Node) -> tuple[int, int]:
        """(SSH forward port, cluster UDP port) of a node: fixed by its index, so they survive relaunches."""
        return self.local.ssh_port_base + node.index, self.local.cluster_port_base + node.index

    @property
    def hub_port(self) -> int:
        return self.local.cluster_port_base

    def _check_ports(self, nodes: list[tuple[str, int, int]]) -> None:
        """(name, SSH forward port, cluster UDP port) of the nodes about to boot: all must be free."""
        taken = []
        for name, ssh_port, cluster_port in nodes:
            if not tcp_port_free(ssh_port):
                taken.append(f"TCP {ssh_port} (SSH forward of {name})")
            if not udp_port_free(cluster_port):
                taken.append(f"UDP {cluster_port} (cluster network of {name})")
        if self._hub_pid() is None and not udp_port_free(self.hub_port):
            taken.append(f"UDP {self.hub_port} (cluster network hub)")
        if taken:
            raise ProviderError(
                f"port(s) on 127.0.0.1 already taken: {', '.join(taken)}",
                hint="stop what uses them (another local cluster?) or set local.ssh_port_base / local.cluster_port_base",
            )

    def _resolve_accel(self, progress: Progress) -> Accel:
        if self._accel is None:
            self._accel = accel.choose(self.local, self.root)
            if self.local.accel is Accel.AUTO:
                slow = " (emulation: slow boots)" if self._accel is Accel.TCG else ""
                progress("local", f"accelerator: {self._accel.value}{slow}")
        return self._accel

    def _prepare(
        self, plan: Plan, node: Node, user_data: str, base: Path, public_key: str, progress: Progress
    ) -> qemuargs.VmSpec:
        d = self.node_dir(node.name)
        d.mkdir(parents=True, mode=0o700)
        spec = self._spec(node.name, node.index, *self.ports(node))
        user_mac, cluster_mac = spec.user_mac, spec.cluster_mac
        prefix = plan.cidr.split("/")[1]
        proc.run(qemuargs.overlay_argv(QEMU_IMG, base, spec.overlay), step=f"{node.name}: overlay")
        seediso.write(
            spec.seed,
            seediso.Seed(
                hostname=node.hostname,
                instance_id=seediso.instance_id(plan.cluster, node.name, user_data),
                user_data=user_data,
                cluster_mac=cluster_mac,
                cluster_address=f"{node.address}/{prefix}",
                user_mac=user_mac,
                public_keys=(public_key,),
            ),
        )
        progress(node.name, f"overlay and seed written ({d})")
        return spec

    def _spec(self, name: str, index: int, ssh_port: int, cluster_port: int) -> qemuargs.VmSpec:
        """A node's VM: its files in its folder, ports and MACs fixed by its index (the same at every boot)."""
        d = self.node_dir(name)
        user_mac, cluster_mac = qemuargs.macs(self.settings.cluster.name, index)
        return qemuargs.VmSpec(
            name=name,
            overlay=d / "overlay.qcow2",
            seed=d / "seed.iso",
            serial_log=d / "serial.log",
            pid_file=d / "pid",
            ssh_port=ssh_port,
            cluster_port=cluster_port,
            hub_port=self.hub_port,
            user_mac=user_mac,
            cluster_mac=cluster_mac,
            user_net=qemuargs.user_net(self.settings.cluster.cidr),
        )

    def vm_argv(self, spec: qemuargs.VmSpec, accel: Accel) -> list[str]:
        kernel = Path(self.local.kernel).expanduser() if self.local.kernel else None
        initrd = Path(self.local.initrd).expanduser() if self.local.initrd else None
        return qemuargs.vm_argv(self.local, accel, spec, kernel=kernel, initrd=initrd, append=self.local.append)

    def _start(self, node: Node, spec: qemuargs.VmSpec, base: Path, accel: Accel, progress: Progress) -> VmRecord:
        record = VmRecord(
            name=node.name, index=node.index, role=node.role.value, address=node.address, pid=0,
            ssh_port=spec.ssh_port, cluster_port=spec.cluster_port, hub_port=spec.hub_port,
            overlay=str(spec.overlay), seed=str(spec.seed), serial_log=str(spec.serial_log),
            image=str(base), accel=accel.value, ssh_user=self.local.ssh_user,
        )
        return self._boot(record, spec, accel, progress)

    def _boot(self, record: VmRecord, spec: qemuargs.VmSpec, accel: Accel, progress: Progress) -> VmRecord:
        """Run qemu for one node (first boot or a restart) and record its pid."""
        argv = self.vm_argv(spec, accel)
        record = VmRecord(**{**asdict(record), "pid": 0, "accel": accel.value})
        self._write_record(record)  # before the start: a VM that starts is always findable
        pid = proc.spawn(argv, spec.pid_file, step=f"{record.name}: qemu")
        record = VmRecord(**{**asdict(record), "pid": pid})
        self._write_record(record)
        progress(record.name, f"booting (pid {pid}, {accel.value}, ssh 127.0.0.1:{spec.ssh_port}, {record.address})")
        return record

    def _wait_booted(self, records: list[VmRecord], progress: Progress) -> None:
        """Until every VM's sshd answers through its forward; a VM that exits or stays silent is an error."""
        start = time.monotonic()
        deadline = start + self.local.boot_timeout_s
        pending = list(records)
        while pending:
            for record in list(pending):
                if not self.running(record):
                    raise ProviderError(
                        f"node {record.name}: qemu exited during boot; last lines of its serial log:\n"
                        + serial_tail(Path(record.serial_log)),
                        hint=f"full log: {self._kept_serial(record)}",
                    )
                if ssh_banner(record.ssh_port):
                    pending.remove(record)
                    progress(record.name, f"sshd answers after {time.monotonic() - start:.0f}s")
            if pending and time.monotonic() > deadline:
                names = ", ".join(r.name for r in pending)
                raise ProviderError(
                    f"{names}: no SSH answer within local.boot_timeout_s = {self.local.boot_timeout_s:.0f}s; "
                    f"last lines of {pending[0].name}'s serial log:\n" + serial_tail(Path(pending[0].serial_log)),
                    hint=f"full log: {self._kept_serial(pending[0])}; raise local.boot_timeout_s under TCG",
                )
            if pending:
                time.sleep(SSH_POLL_S)

    def _kept_serial(self, record: VmRecord) -> Path:
        """Where a failed node's serial log survives the clean-up of its folder."""
        return self.root / "failed" / f"{record.name}.serial.log"

    def _undo(self, started: list[VmRecord], nodes: list[Node], progress: Progress, keep_serial: bool) -> None:
        """Nothing half-created: stop the VMs this launch started and remove their folders (serial logs kept)."""
        for record in started:
            try:
                self._stop(record, progress)
            except NomadicError as exc:
                print(f"warning: {exc}", file=sys.stderr)
        for node in nodes:
            d = self.node_dir(node.name)
            serial = d / "serial.log"
            if keep_serial and serial.exists():
                kept = self.root / "failed" / f"{node.name}.serial.log"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(serial, kept)
            shutil.rmtree(d, ignore_errors=True)
        if not any(self.running(r) for r in self.records()):
            self._stop_hub()

    def _stop(self, record: VmRecord, progress: Progress) -> None:
        if record.pid <= 0 or not self.running(record):
            progress(record.name, "not running")
            return
        progress(record.name, f"stopping qemu (pid {record.pid})")
        proc.terminate(record.pid, "qemu-system", record.overlay)

    # -- the cluster network hub ---------------------------------------------------------------------------

    def _hub_files(self) -> tuple[Path, Path]:
        return self.root / "hub.pid", self.root / HUB_RECORD

    def _hub_pid(self) -> int | None:
        pid_file, record = self._hub_files()
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if proc.is_ours(pid, "python", str(pid_file)) else None

    def _ensure_hub(self, peers: list[int]) -> None:
        """One hub per local cluster, repeating frames between exactly these ports (restarted when they change)."""
        pid_file, record = self._hub_files()
        peers = sorted(set(peers))
        pid = self._hub_pid()
        if pid is not None:
            try:
                if json.loads(record.read_text(encoding="utf-8")).get("peers") == peers:
                    return
            except (OSError, ValueError):
                pass
            proc.terminate(pid, "python", str(pid_file))
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "nomadic.hub", "--port", str(self.hub_port), "--pid-file", str(pid_file), "--daemonize"]
        for port in peers:
            argv += ["--peer", str(port)]
        pid = proc.spawn(argv, pid_file, step="cluster network hub")
        write_text_atomic(record, json.dumps({"pid": pid, "port": self.hub_port, "peers": peers}) + "\n")

    def _stop_hub(self) -> None:
        pid_file, record = self._hub_files()
        pid = self._hub_pid()
        if pid is not None:
            proc.terminate(pid, "python", str(pid_file))
        record.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)

