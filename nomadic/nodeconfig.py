"""Per-node Consul and Nomad configs and the cloud-init user-data that installs them (pure rendering + writing)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import imagefacts, keys as gossip
from .config import Settings
from .errors import ConfigError
from .plan import Node, Plan, Role
from .render import render

# OCI: "The combined size of the metadata and extendedMetadata can be a maximum of 32,000 bytes."
OCI_METADATA_LIMIT = 32_000
NODES_DIR = "nodes"
FILE_NAMES = ("user-data", "consul.hcl", "nomad.hcl")

FIREWALL_ZONE = "nomadic"
ZONE_FILE = f"/etc/firewalld/zones/{FIREWALL_ZONE}.xml"
CONSUL_HTTP = "127.0.0.1:8500"
# Reserved for the OS, Docker and the agents on a 1 GB / 2 vCPU E2.1.Micro (MHz, MB). A node that is also a
# server holds the Raft state of both Consul and Nomad in memory, so it keeps more back. From benchmarks/boot.py
# on 1 GB VMs (README, "Boot and memory figures"): a formed server+client node uses 295-315 MB (Consul 100-115 MB
# and Nomad 75-90 MB resident, the rest the OS), a client-only node about 270 MB (Consul 90, Nomad 75); Docker's
# engine, absent from the test image, adds about 100 MB; the rest is headroom (more on servers: Raft, catalog).
RESERVED = {
    Role.BOTH: {"cpu": 300, "memory": 500},
    Role.CLIENT: {"cpu": 200, "memory": 400},
}


@dataclass(frozen=True)
class NodeFiles:
    consul_hcl: str
    nomad_hcl: str
    user_data: str


def network_interface(address: str) -> str:
    """A go-sockaddr template naming the interface that holds `address` (eth0 in AlmaLinux's OCI image, eth1 or so locally).

    go-sockaddr matches the regexp against "address/prefix"; dots are written [.] because a backslash is
    not a valid escape in a Go template string.
    """
    pattern = "^" + address.replace(".", "[.]") + "(/[0-9]+)?$"
    return f'{{{{ GetAllInterfaces | include "address" "{pattern}" | attr "name" }}}}'


def _context(plan: Plan, node: Node, keys: gossip.GossipKeys) -> dict[str, Any]:
    reserved = RESERVED.get(node.role, {"cpu": 0, "memory": 0})
    return {
        "plan": plan,
        "node": node,
        "keys": keys,
        "consul": {"data_dir": imagefacts.CONSUL_DATA_DIR.path, "client_addr": "127.0.0.1"},
        "nomad": {
            "data_dir": imagefacts.NOMAD_DATA_DIR.path,
            "http_addresses": f"127.0.0.1 {node.address}",
            "network_interface": network_interface(node.address),
            "cni_path": imagefacts.CNI_DIR,
            "reserved_cpu": reserved["cpu"],
            "reserved_memory": reserved["memory"],
            "consul_address": CONSUL_HTTP,
        },
    }


def render_node(plan: Plan, node: Node, keys: gossip.GossipKeys, settings: Settings) -> NodeFiles:
    """One node's three files; pure: the same plan, node and keys always give the same text."""
    del settings  # part of the contract for settings-dependent choices; none today
    context = _context(plan, node, keys)
    consul_hcl = render("consul.hcl.j2", context)
    nomad_hcl = render("nomad.hcl.j2", context)
    firewall = {
        "zone": FIREWALL_ZONE,
        "services": ("ssh", *imagefacts.FIREWALLD_SERVICES),
        "dynamic_ports": imagefacts.NOMAD_DYNAMIC_PORTS,
    }
    zone_xml = render("firewalld-zone.xml.j2", {"plan": plan, "firewall": firewall})
    files = {
        # Both configs carry a gossip key: readable by root and, for Consul, its group only.
        "consul": {"path": imagefacts.CONSUL_CONFIG_FILE, "owner": f"root:{imagefacts.CONSUL_GROUP}", "mode": "0640"},
        "nomad": {"path": imagefacts.NOMAD_CONFIG_FILE, "owner": "root:root", "mode": "0640"},
        "zone": {"path": ZONE_FILE, "owner": "root:root", "mode": "0644"},
    }
    # The image ships the agents' units disabled: they start here, after the zone that opens their ports is
    # loaded. --no-block: Consul is ready only once it has joined a peer, which may still be booting; cloud-init
    # must not wait for that (systemd orders nomad after consul and retries both until the peers answer).
    runcmd = [
        ["firewall-cmd", "--reload"],
        ["systemctl", "enable", "--now", "--no-block", *imagefacts.AGENT_UNITS],
    ]
    user_data = render(
        "user-data.yaml.j2",
        {
            **context,
            "consul_hcl": consul_hcl,
            "nomad_hcl": nomad_hcl,
            "zone_xml": zone_xml,
            "files": files,
            "runcmd": runcmd,
        },
    )
    return NodeFiles(consul_hcl=consul_hcl, nomad_hcl=nomad_hcl, user_data=user_data)


def oci_metadata(user_data: str, ssh_authorized_keys: str | None = None) -> dict[str, str]:
    """The instance metadata OCI receives: user_data base64-encoded, the SSH keys as they are."""
    metadata = {"user_data": base64.b64encode(user_data.encode("utf-8")).decode("ascii")}
    if ssh_authorized_keys:
        metadata["ssh_authorized_keys"] = ssh_authorized_keys
    return metadata


def metadata_size(metadata: Mapping[str, str]) -> int:
    """Bytes of the metadata as the JSON object the API is sent (keys, values, quotes): never less than OCI counts."""
    return len(json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def check_metadata_size(metadata: Mapping[str, str], node: str | None = None) -> None:
    """Fail before launch when the metadata is over OCI's 32,000-byte limit (user_data counted after base64)."""
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise ConfigError(f"instance metadata {key!r} must be text, not {type(value).__name__}")
    size = metadata_size(metadata)
    if size > OCI_METADATA_LIMIT:
        who = f"node {node}" if node else "a node"
        parts = ", ".join(f"{k} {len(v.encode('utf-8'))} bytes" for k, v in metadata.items())
        raise ConfigError(
            f"instance metadata for {who} is {size} bytes, over OCI's limit of {OCI_METADATA_LIMIT} ({parts})",
            hint="the user-data is base64-encoded: shorten what it carries, or use a shorter SSH key (ed25519)",
        )


def _ssh_public_key(settings: Settings) -> str | None:
    """The key that launch will send; render works without one, but a file that is there must be a public key."""
    if not os.path.lexists(settings.cluster.ssh_public_key.expanduser()):
        return None  # the launcher requires it
    return gossip.ssh_public_key(settings)


def render_nodes(settings: Settings, plan: Plan, keys: gossip.GossipKeys | None = None) -> dict[str, NodeFiles]:
    """Every node's files (keys loaded or created once for the cluster); each checked against OCI's size limit."""
    keys = keys or gossip.load_or_create(settings)
    ssh_key = _ssh_public_key(settings)
    rendered: dict[str, NodeFiles] = {}
    for node in plan.nodes:
        files = render_node(plan, node, keys, settings)
        check_metadata_size(oci_metadata(files.user_data, ssh_key), node=node.name)
        rendered[node.name] = files
    return rendered


def nodes_dir(settings: Settings) -> Path:
    return settings.cluster_dir / NODES_DIR


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_nodes(settings: Settings, plan: Plan, rendered: Mapping[str, NodeFiles] | None = None) -> Path:
    """Replace build/<cluster>/nodes/ with the rendered nodes as a whole (no stale nodes, nothing half-written).

    The files carry the gossip keys, so the folders are 0700 and the files 0600.
    """
    if rendered is None:
        rendered = render_nodes(settings, plan)
    target = nodes_dir(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".nodes-", dir=target.parent))  # mkdtemp: mode 0700
    try:
        for name, files in rendered.items():
            node_dir = staging / name
            node_dir.mkdir(mode=0o700)
            _write_private(node_dir / "user-data", files.user_data)
            _write_private(node_dir / "consul.hcl", files.consul_hcl)
            _write_private(node_dir / "nomad.hcl", files.nomad_hcl)
        old = None
        if target.exists():
            old = target.parent / f".nodes-old-{os.getpid()}"
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
