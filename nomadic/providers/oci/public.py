"""The cluster's public network security group: exactly the ports its deployed jobs publish, and nothing else.

A separate group from the cluster-internal one (nsg.CLUSTER): its rules have a CIDR source (jobs.public_cidr,
0.0.0.0/0 by default), each described `job <name>: <proto> <port>` so that `invoke stop <job>` removes exactly that
job's rules and keeps the others'. It is put on the client nodes' VNICs (where jobs run) and, being tagged with
the cluster, deleted by `invoke destroy` with the cluster's other groups.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ...config import Settings
from . import nsg, placement, preflight
from .provider import OciProvider

ROLE = "public"


def _group(rules: Sequence[nsg.Rule]) -> nsg.Group:
    return nsg.Group(ROLE, tuple(rules))


def _label(job: str) -> str:
    return f"job {job}: "


def job_rules(job: str, ports: Sequence[tuple[int, str]], cidr: str) -> list[nsg.Rule]:
    """One stateful ingress rule per (port, "tcp"|"udp") the job publishes."""
    return [
        nsg.Rule(nsg.TCP if proto == "tcp" else nsg.UDP, port, port, f"{_label(job)}{proto} {port}", source=cidr)
        for port, proto in ports
    ]


def _present(api: Any, group_id: str) -> list[nsg.Rule]:
    found = []
    for r in api.list("list security rules", api.network.list_network_security_group_security_rules, group_id,
                      direction="INGRESS"):  # fmt: skip
        protocol, low, high, source = nsg._key(r)
        found.append(nsg.Rule(protocol, low, high, r.description or "", source=source))
    return found


def _vcn(provider: OciProvider) -> tuple[str, str]:
    settings = provider.settings
    compartment = preflight.require(settings, "compartment_id")
    subnet_id = preflight.require(settings, "subnet_id")
    subnet = provider.api.call("get subnet", provider.api.network.get_subnet, subnet_id)
    return compartment, str(subnet.vcn_id)


def publish(provider: OciProvider, job: str, ports: Sequence[tuple[int, str]], cidr: str,
            say: Callable[[str], None]) -> None:  # fmt: skip
    """Open the job's ports in the public group (created if missing) and put the group on every client node."""
    settings: Settings = provider.settings
    api, name = provider.api, settings.cluster.name
    compartment, vcn_id = _vcn(provider)
    existing = nsg.find(api, compartment, vcn_id, name, _group(()))
    others = [r for r in (_present(api, existing.id) if existing else []) if not r.description.startswith(_label(job))]
    group = _group(others + job_rules(job, ports, cidr))
    nonce = placement.launch_nonce(settings)
    group_id = nsg.ensure(api, compartment, vcn_id, name, group,
                          lambda attempt: placement.retry_token(name, f"nsg-{ROLE}", attempt, nonce))  # fmt: skip
    for node in provider.find():
        vnic = provider.vnics.get(node.id)
        if vnic and node.role.is_client and nsg.attach(api, vnic, [group_id]):
            say(f"{node.name}: added to network security group {group.display_name(name)}")
    opened = ", ".join(f"{proto} {port}" for port, proto in ports)
    say(f"{job}: {opened} open to {cidr} in network security group {group.display_name(name)}")


def unpublish(provider: OciProvider, job: str, say: Callable[[str], None]) -> None:
    """Remove the job's rules from the public group; the other jobs' rules stay."""
    api, name = provider.api, provider.settings.cluster.name
    compartment, vcn_id = _vcn(provider)
    existing = nsg.find(api, compartment, vcn_id, name, _group(()))
    if existing is None:
        return
    present = _present(api, existing.id)
    keep = [r for r in present if not r.description.startswith(_label(job))]
    if len(keep) != len(present):
        nsg.sync_rules(api, existing.id, keep)
        say(f"{job}: its ports removed from network security group {_group(()).display_name(name)}")
