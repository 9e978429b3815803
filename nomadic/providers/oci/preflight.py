"""Preflight: every check that can fail before anything is created; its result is the context launch uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import artifacts, keys
from ...config import OCID_RE, Settings, Target
from ...errors import ConfigError
from ...plan import node_name
from . import nsg
from .api import Api


@dataclass(frozen=True)
class LaunchContext:
    """What preflight learned and launch needs: nothing here is looked up twice."""

    image: str
    ads: tuple[str, ...]
    ssh_key: str
    vcn_id: str
    assign_public_ip: bool
    hostname_labels: bool
    notes: tuple[str, ...] = ()


def require(settings: Settings, key: str) -> str:
    value = getattr(settings.oci, key)
    if not value:
        raise ConfigError(
            f"setting oci.{key} is empty",
            hint=f"set it in invoke.yaml or INVOKE_OCI_{key.upper()} (an OCID from the OCI console)",
        )
    return str(value)


def image_id(settings: Settings, image: str | None) -> str:
    found = image or (artifacts.lookup(settings, Target.OCI) or {}).get("image_id")
    if not found:
        raise ConfigError(
            f"no OCI image recorded for '{settings.build.image}' in build/artifacts.json and none given",
            hint="run 'invoke build-image' or pass --image-id ocid1.image...",
        )
    if not OCID_RE.match(found) or not found.startswith("ocid1.image."):
        raise ConfigError(f"image {found!r} is not an image OCID", hint="pass --image-id ocid1.image.oc1.<region>.<id>")
    return str(found)


def run(api: Api, settings: Settings, image: str | None) -> LaunchContext:
    """Settings, credentials, subnet, image, shape, ADs, security lists; raises a one-line error, creates nothing."""
    require(settings, "compartment_id")
    subnet_id = require(settings, "subnet_id")
    image = image_id(settings, image)
    ssh_key = keys.ssh_public_key(settings)
    notes: list[str] = []
    subnet = api.call(f"subnet {subnet_id}", api.network.get_subnet, subnet_id)
    if subnet.cidr_block != settings.cluster.cidr:
        raise ConfigError(
            f"setting cluster.cidr = {settings.cluster.cidr} differs from subnet {subnet_id}'s CIDR {subnet.cidr_block}",
            hint=f"set cluster.cidr to {subnet.cidr_block}",
        )
    if not subnet.dns_label:
        notes.append(f"subnet {subnet_id} has no DNS label: instances get no hostname_label")
    _check_image(api, settings, image)
    ads = _availability_domains(api, settings, subnet)
    notes += _exposure_warnings(api, subnet)
    api.call(f"compartment {settings.oci.compartment_id} instances", api.compute.list_instances,
             settings.oci.compartment_id, limit=1)
    return LaunchContext(
        image=image, ads=tuple(ads), ssh_key=ssh_key, vcn_id=subnet.vcn_id,
        assign_public_ip=not subnet.prohibit_public_ip_on_vnic, hostname_labels=bool(subnet.dns_label),
        notes=tuple(notes),
    )


def _check_image(api: Api, settings: Settings, image: str) -> None:
    img = api.call(f"image {image}", api.compute.get_image, image)
    if img.lifecycle_state != "AVAILABLE":
        raise ConfigError(f"image {image} is {img.lifecycle_state}, not AVAILABLE", hint="wait for it or rebuild it")
    entries = api.list(f"image {image} shapes", api.compute.list_image_shape_compatibility_entries, image)
    shapes = sorted({e.shape for e in entries})
    if settings.oci.shape not in shapes:
        raise ConfigError(
            f"image {image} is not compatible with shape {settings.oci.shape} (compatible: {', '.join(shapes) or 'none'})",
            hint="set oci.shape to one of them or build the image for this shape",
        )


def _availability_domains(api: Api, settings: Settings, subnet: Any) -> list[str]:
    tenancy = api.session.tenancy_id
    ads = [a.name for a in api.call("availability domains", api.identity.list_availability_domains, tenancy)]
    wanted = list(settings.oci.availability_domains) or ads
    unknown = [a for a in wanted if a not in ads]
    if unknown:
        raise ConfigError(
            f"setting oci.availability_domains names unknown ADs: {', '.join(unknown)}",
            hint=f"this region has: {', '.join(ads)}",
        )
    if subnet.availability_domain:  # an AD-specific subnet pins every node there
        wanted = [subnet.availability_domain]
    return wanted


def _exposure_warnings(api: Api, subnet: Any) -> list[str]:
    lists = [api.call(f"security list {sl}", api.network.get_security_list, sl) for sl in subnet.security_list_ids or []]
    exposed = nsg.exposed(lists)
    if not exposed:
        return []
    return [
        "a security list of the subnet admits cluster ports from 0.0.0.0/0 (" + ", ".join(exposed) + "); "
        "the cluster's network security group is enough: remove those rules in the console"
    ]


def foreign_labels(api: Api, settings: Settings, our_vnics: set[str]) -> dict[str, str]:
    """Hostname labels this cluster will use that something else in the subnet holds: label -> its address."""
    wanted = {node_name(settings.cluster.name, i).lower() for i in range(1, settings.cluster.count + 1)}
    held = {}
    for ip in api.list("list private IPs", api.network.list_private_ips, subnet_id=settings.oci.subnet_id):
        label = (getattr(ip, "hostname_label", None) or "").lower()
        if label in wanted and ip.vnic_id not in our_vnics:
            held[label] = ip.ip_address
    return held


def refuse_foreign_labels(held: dict[str, str], settings: Settings) -> None:
    if held:
        which = ", ".join(f"{label} (at {ip})" for label, ip in sorted(held.items()))
        raise ConfigError(
            f"hostname labels of cluster {settings.cluster.name} are already used in subnet {settings.oci.subnet_id} "
            f"by instances not in this cluster: {which}",
            hint="set cluster.name (INVOKE_CLUSTER_NAME or --cluster) to another name, or free those labels",
        )
