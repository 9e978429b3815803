"""What each job needs and publishes, and its rendering: pure functions of the settings and the cluster's nodes."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import render as jinja
from ..config import Settings
from ..errors import ConfigError, PlanError
from ..fsutil import write_text_atomic
from ..outputs import INVENTORY


class Job(str, enum.Enum):
    """The jobs that ship in jobs/, in the order `deploy --all` submits them (web before the lb in front of it)."""

    ECHO = "echo"
    KNOTDNS = "knotdns"
    WEB = "web"
    LB = "lb"

    @property
    def template(self) -> str:
        return f"{self.value}.nomad.hcl.j2"


@dataclass(frozen=True)
class PublicPort:
    """A port a job publishes on every node it runs on: what the public NSG must open."""

    port: int
    protocol: str  # "tcp" or "udp"


@dataclass(frozen=True)
class ClusterNode:
    """One node as the launch outputs (build/<cluster>/inventory.ini) describe it."""

    name: str
    private_ip: str
    public_ip: str
    is_client: bool


def parse_job(name: str) -> Job:
    try:
        return Job(name.strip().lower())
    except ValueError:
        raise ConfigError(
            f"unknown job {name!r}", hint=f"the jobs are {', '.join(j.value for j in Job)}; or pass --all"
        ) from None


def public_ports(job: Job, settings: Settings) -> list[PublicPort]:
    """Exactly the ports a job's clients must reach from the internet."""
    js = settings.jobs
    if job is Job.ECHO:
        return [PublicPort(js.echo_port, "tcp")]
    if job is Job.KNOTDNS:
        return [PublicPort(js.dns_port, "udp"), PublicPort(js.dns_port, "tcp")]
    if job is Job.LB:
        return [PublicPort(js.http_port, "tcp")]
    return []  # web is reached only by HAProxy, inside the cluster network


_HOST_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<vars>.*)$")


def read_nodes(settings: Settings) -> list[ClusterNode]:
    """The cluster's nodes from the inventory launch wrote; an error naming the file when there is none."""
    path = settings.cluster_dir / INVENTORY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no launch outputs for cluster {settings.cluster.name}: {path} does not exist",
            hint="run 'invoke launch' first (or pass --cluster NAME)",
        ) from None
    nodes: dict[str, dict[str, str]] = {}
    clients: set[str] = set()
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line.strip("[]")
            continue
        if group not in ("servers", "clients"):
            continue
        match = _HOST_LINE.match(line)
        if not match:
            continue
        fields = dict(part.split("=", 1) for part in match["vars"].split() if "=" in part)
        nodes[match["name"]] = fields
        if group == "clients":
            clients.add(match["name"])
    return [
        ClusterNode(name, f.get("private_ip", ""), f.get("public_ip", ""), name in clients)
        for name, f in sorted(nodes.items())
    ]


def public_addresses(settings: Settings, nodes: Sequence[ClusterNode]) -> list[str]:
    """The addresses the DNS records name: jobs.public_addresses, else each client node's public IP.

    Local VMs have no public address: their cluster-network address stands in (reachable from the other VMs).
    """
    if settings.jobs.public_addresses:
        return list(settings.jobs.public_addresses)
    clients = [n for n in nodes if n.is_client]
    missing = [n.name for n in clients if not n.public_ip and settings.cluster.provider.value == "oci"]
    if missing or not clients:
        raise ConfigError(
            f"no public address known for {', '.join(missing) or 'any client node'} of cluster {settings.cluster.name}",
            hint="launch the nodes with public IPs, or list them in setting jobs.public_addresses",
        )
    return [n.public_ip or n.private_ip for n in clients]


def check_static_count(job: Job, count: int, nodes: int) -> None:
    """A static port binds once per node: more instances than nodes never finish placing. Refuse it here."""
    if count > nodes:
        raise PlanError(
            f"job {job.value}: count {count} is more than the {nodes} client node{'s' if nodes != 1 else ''} that can "
            f"run it, and each instance needs its own node for its static port",
            hint=f"set jobs.{job.value}_count to {nodes} or less (0 means one per client node), or launch more nodes",
        )
    if count < 1:
        raise PlanError(f"job {job.value}: no client node to run it on", hint="launch a cluster with client nodes")


def job_count(job: Job, settings: Settings, clients: int) -> int:
    """How many instances a job asks for, checked against the client nodes when it binds a static port."""
    if job is Job.WEB:
        return settings.jobs.web_count
    count = settings.jobs.echo_count if job is Job.ECHO and settings.jobs.echo_count else clients
    check_static_count(job, count, clients)
    return count


def zone_text(domain: str, addresses: Sequence[str], serial: int) -> str:
    return jinja.render("knotdns.zone.j2", {"domain": domain, "addresses": list(addresses), "serial": serial})


def zone_serial(state: Path, domain: str, addresses: Sequence[str], now: float | None = None) -> int:
    """The zone's SOA serial: kept while the zone is unchanged, and greater than before after any change.

    The serial is the Unix time of the change (or the previous serial + 1 if the clock is behind it), recorded
    in `state` with a digest of the zone it belongs to.
    """
    digest = hashlib.sha256(zone_text(domain, addresses, 0).encode()).hexdigest()
    previous: dict = {}
    try:
        previous = json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        raise ConfigError(f"{state} is not a zone serial record", hint="delete it; the next serial is the time") from None
    if previous.get("digest") == digest and isinstance(previous.get("serial"), int):
        return int(previous["serial"])
    serial = max(int(now if now is not None else time.time()), int(previous.get("serial", 0)) + 1) % 2**32
    state.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(state, json.dumps({"digest": digest, "serial": serial}) + "\n")
    return serial


def dns_records(domain: str, addresses: Sequence[str]) -> list[str]:
    """The delegation the user enters at the registrar of the parent zone: NS records and their glue."""
    lines = [f"{domain}.  IN  NS  {ns}.{domain}." for ns in ("ns1", "ns2")]
    lines += [f"{ns}.{domain}.  IN  A  {a}" for ns in ("ns1", "ns2") for a in addresses]
    return lines


def render_job(
    job: Job, settings: Settings, nodes: Sequence[ClusterNode], serial_state: Path | None = None
) -> str:
    """The job file for this cluster (HCL2). knotdns also needs the domain, the addresses and the serial record."""
    clients = sum(1 for n in nodes if n.is_client)
    context: dict = {
        "datacenter": settings.cluster.datacenter,
        "cluster": settings.cluster.name,
        "jobs": settings.jobs,
        "count": job_count(job, settings, clients),
    }
    if job is Job.KNOTDNS:
        domain = settings.jobs.domain
        if not domain:
            raise ConfigError(
                "setting jobs.domain is empty: knotdns needs the subdomain it is authoritative for",
                hint="set jobs.domain (e.g. oracle.example.com) in invoke.yaml or INVOKE_JOBS_DOMAIN",
            )
        addresses = public_addresses(settings, nodes)
        state = serial_state or settings.cluster_dir / "jobs" / "knotdns.serial.json"
        serial = zone_serial(state, domain, addresses)
        context |= {"domain": domain, "serial": serial, "zone": zone_text(domain, addresses, serial)}
    return jinja.render(job.template, context)
