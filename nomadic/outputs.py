"""What launch leaves for the user: build/<cluster>/inventory.ini, build/<cluster>/ssh_config and a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from .config import Settings
from .fsutil import write_text_atomic
from .providers.base import NodeStatus

INVENTORY = "inventory.ini"
SSH_CONFIG = "ssh_config"
KNOWN_HOSTS = "known_hosts"
TUNNEL_HOST = "ui"  # Host alias (prefixed with the cluster name) that carries the UI tunnels
NOMAD_UI_PORT = 4646
CONSUL_UI_PORT = 8500


def _sorted(nodes: Iterable[NodeStatus]) -> list[NodeStatus]:
    return sorted(nodes, key=lambda n: n.name)


def tunnel_alias(settings: Settings) -> str:
    return f"{settings.cluster.name}-{TUNNEL_HOST}"


def inventory_text(settings: Settings, nodes: Sequence[NodeStatus]) -> str:
    """Ansible INI inventory: groups servers and clients (a node with both roles is in both)."""
    key = settings.cluster.ssh_private_key.expanduser()
    lines = [f"# cluster {settings.cluster.name}: written by 'invoke launch'; 'invoke destroy' removes it"]

    def host(n: NodeStatus) -> str:
        parts = [n.name, f"ansible_host={n.ssh_host or n.private_ip}", f"ansible_user={n.ssh_user}"]
        if n.ssh_port != 22:
            parts.append(f"ansible_port={n.ssh_port}")
        parts.append(f"private_ip={n.private_ip}")
        if n.public_ip:
            parts.append(f"public_ip={n.public_ip}")  # read by the jobs (DNS records name these addresses)
        return " ".join(parts)

    for group, pick in (("servers", lambda n: n.role.is_server), ("clients", lambda n: n.role.is_client)):
        lines += ["", f"[{group}]"] + [host(n) for n in _sorted(nodes) if pick(n)]
    lines += [
        "",
        "[all:vars]",
        f"ansible_ssh_private_key_file={key}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={settings.cluster_dir / KNOWN_HOSTS} -o StrictHostKeyChecking=accept-new'",
        f"nomadic_cluster={settings.cluster.name}",
        "",
    ]
    return "\n".join(lines)


def _host_block(alias: str, n: NodeStatus, settings: Settings) -> list[str]:
    return [
        f"Host {alias}",
        f"  HostName {n.ssh_host or n.private_ip}",
        f"  Port {n.ssh_port}",
        f"  User {n.ssh_user}",
        f"  IdentityFile {settings.cluster.ssh_private_key.expanduser()}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {settings.cluster_dir / KNOWN_HOSTS}",
        "  StrictHostKeyChecking accept-new",
    ]


def ssh_config_text(settings: Settings, nodes: Sequence[NodeStatus]) -> str:
    """One Host per node, plus <cluster>-ui: the first server with tunnels to the Nomad and Consul UIs."""
    path = settings.cluster_dir / SSH_CONFIG
    lines = [
        f"# cluster {settings.cluster.name}: ssh -F {path} <node>",
        f"# UIs: ssh -F {path} -N {tunnel_alias(settings)}, then open http://localhost:{NOMAD_UI_PORT} "
        f"(Nomad) and http://localhost:{CONSUL_UI_PORT} (Consul)",
        "",
    ]
    ordered = _sorted(nodes)
    for n in ordered:
        lines += _host_block(n.name, n, settings) + [""]
    servers = [n for n in ordered if n.role.is_server]
    if servers:
        # Both agents listen on the server's loopback (Consul only there), so the tunnel ends at 127.0.0.1.
        lines += _host_block(tunnel_alias(settings), servers[0], settings) + [
            f"  LocalForward {NOMAD_UI_PORT} 127.0.0.1:{NOMAD_UI_PORT}",
            f"  LocalForward {CONSUL_UI_PORT} 127.0.0.1:{CONSUL_UI_PORT}",
            "  ExitOnForwardFailure yes",
            "",
        ]
    return "\n".join(lines)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header, columns aligned with two spaces, no trailing blanks."""
    everything = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in everything)


def table(nodes: Sequence[NodeStatus], health: dict[str, str] | None = None) -> str:
    """The summary: one row per node; a HEALTH column when health is known."""
    header = ["NAME", "ROLE", "STATE", "PRIVATE IP", "PUBLIC IP", "SSH", "ID"]
    if health is not None:
        header.insert(3, "HEALTH")
    rows = []
    for n in _sorted(nodes):
        ssh = f"{n.ssh_user}@{n.ssh_host}" + (f":{n.ssh_port}" if n.ssh_port != 22 else "") if n.ssh_host else "-"
        row = [n.name, n.role.value, n.state, n.private_ip or "-", n.public_ip or "-", ssh, n.id]
        if health is not None:
            row.insert(3, health.get(n.name, "-"))
        rows.append(row)
    return format_table(header, rows)


# Which provider's nodes the outputs describe: only that provider's destroy removes them.
PROVIDER_MARK = ".provider"


def write(settings: Settings, nodes: Sequence[NodeStatus]) -> list[Path]:
    folder = settings.cluster_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / PROVIDER_MARK, settings.cluster.provider.value + "\n")
    written = []
    for name, text in ((INVENTORY, inventory_text(settings, nodes)), (SSH_CONFIG, ssh_config_text(settings, nodes))):
        written.append(write_text_atomic(folder / name, text))
    return written


def written_by(settings: Settings) -> str | None:
    """The provider whose launch wrote this cluster's outputs (None: no mark, outputs of an older version)."""
    try:
        return (settings.cluster_dir / PROVIDER_MARK).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def remove(settings: Settings) -> list[Path]:
    """Forget a destroyed cluster's outputs (and its host keys: the next nodes at these addresses are new).

    Outputs another provider wrote for a cluster of the same name describe live nodes: they stay.
    """
    mark = written_by(settings)
    if mark is not None and mark != settings.cluster.provider.value:
        return []
    removed = []
    (settings.cluster_dir / PROVIDER_MARK).unlink(missing_ok=True)
    for name in (INVENTORY, SSH_CONFIG, KNOWN_HOSTS):
        path = settings.cluster_dir / name
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed
