"""The NoCloud seed of a local VM: an ISO 9660 image labelled `cidata` with user-data, meta-data, network-config."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import yaml

USER_NIC = "user0"  # user-mode networking: DHCP, default route, the SSH forward
CLUSTER_NIC = "cluster0"  # the cluster network: the node's planned address, no gateway
LABEL = "cidata"  # what cloud-init's NoCloud datasource looks for (blkid LABEL=cidata)
# ISO 9660 names are 8.3 upper case; Rock Ridge (Linux) and Joliet give the names cloud-init opens.
_ISO_NAMES = {
    "user-data": "USERDATA.;1",
    "meta-data": "METADATA.;1",
    "network-config": "NETCFG.;1",
    "vendor-data": "VENDDATA.;1",
}


@dataclass(frozen=True)
class Seed:
    """What one node's seed carries; user_data is delivered byte for byte as rendered."""

    hostname: str
    instance_id: str
    user_data: str
    cluster_mac: str
    cluster_address: str  # "10.0.0.2/24": the planned address with the cluster network's prefix
    user_mac: str
    public_keys: tuple[str, ...] = ()
    vendor_data: str | None = None


def instance_id(cluster: str, node: str, user_data: str) -> str:
    """Changes whenever the user-data does, so cloud-init treats a re-created node as a new instance."""
    digest = hashlib.sha256(user_data.encode("utf-8")).hexdigest()[:12]
    return f"{cluster}.{node}.{digest}"


def meta_data(seed: Seed) -> str:
    data: dict = {"instance-id": seed.instance_id, "local-hostname": seed.hostname}
    if seed.public_keys:
        # NoCloud hands meta-data public-keys to the default user, as OCI does with its ssh_authorized_keys
        # metadata: the key reaches the VM without touching the rendered user-data.
        data["public-keys"] = list(seed.public_keys)
    return yaml.safe_dump(data, sort_keys=False)


def network_config(seed: Seed) -> str:
    """Network config v2: DHCP on the user-mode NIC (default route), the planned static address on the cluster NIC."""
    # set-name gives the NICs stable names whatever the guest's udev calls them (renderers match on them too).
    data = {
        "version": 2,
        "ethernets": {
            USER_NIC: {"match": {"macaddress": seed.user_mac}, "set-name": USER_NIC, "dhcp4": True, "dhcp6": False},
            CLUSTER_NIC: {
                "match": {"macaddress": seed.cluster_mac},
                "set-name": CLUSTER_NIC,
                "dhcp4": False,
                "dhcp6": False,
                "addresses": [seed.cluster_address],
            },
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def files(seed: Seed) -> dict[str, bytes]:
    """The seed's files by their cloud-init names."""
    out = {
        "user-data": seed.user_data.encode("utf-8"),
        "meta-data": meta_data(seed).encode("utf-8"),
        "network-config": network_config(seed).encode("utf-8"),
    }
    if seed.vendor_data is not None:
        out["vendor-data"] = seed.vendor_data.encode("utf-8")
    return out


def write(path: Path, seed: Seed) -> Path:
    """Write the seed ISO to `path` (mode 0600: the user-data holds the cluster's gossip keys)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    try:
        for name, data in files(seed).items():
            iso.add_fp(io.BytesIO(data), len(data), f"/{_ISO_NAMES[name]}", rr_name=name, joliet_path=f"/{name}")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            iso.write_fp(fh)
        tmp.replace(path)
    finally:
        iso.close()
    return path


def read(path: Path) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names (for checks and tests)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out: dict[str, bytes] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode("utf-8")
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            out[name] = buf.getvalue()
        return out
    finally:
        iso.close()
