"""The NoCloud seed ISO: label, file names as cloud-init reads them, user-data unchanged, network-config as rendered."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from nomadic import proc, seediso

IN_CI = os.environ.get("CI") == "true"

USER_DATA = "#cloud-config\n# a comment, unicode: ü\nhostname: \"nomadic-01\"\nruncmd:\n  - [\"true\"]\n"


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        if IN_CI:
            pytest.fail(f"{name} is missing in CI (bin/setup installs it)")
        pytest.skip(f"{name} not installed")
    return found


def make_seed(**overrides) -> seediso.Seed:
    values = dict(
        hostname="nomadic-01",
        instance_id=seediso.instance_id("nomadic", "nomadic-01", USER_DATA),
        user_data=USER_DATA,
        # Digits only: YAML 1.1 would read 52:54:00:12:00:01 as a base-60 number if it were not quoted.
        cluster_mac="52:54:00:12:00:01",
        cluster_address="10.0.0.2/24",
        user_mac="52:54:01:12:00:01",
        public_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1 user@host",),
    )
    values.update(overrides)
    return seediso.Seed(**values)


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    return seediso.write(tmp_path / "seed.iso", make_seed())


def test_user_data_is_delivered_byte_for_byte(iso: Path) -> None:
    assert seediso.read(iso)["user-data"] == USER_DATA.encode("utf-8")


def test_seed_holds_exactly_the_nocloud_files(iso: Path) -> None:
    assert sorted(seediso.read(iso)) == ["meta-data", "network-config", "user-data"]


def test_vendor_data_only_when_given(tmp_path: Path) -> None:
    path = seediso.write(tmp_path / "v.iso", make_seed(vendor_data="#cloud-config\n{}\n"))
    assert seediso.read(path)["vendor-data"] == b"#cloud-config\n{}\n"


def test_meta_data_names_instance_hostname_and_key(iso: Path) -> None:
    meta = yaml.safe_load(seediso.read(iso)["meta-data"])
    assert meta["local-hostname"] == "nomadic-01"
    assert meta["instance-id"].startswith("nomadic.nomadic-01.")
    assert meta["public-keys"] == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1 user@host"]


def test_instance_id_changes_with_user_data() -> None:
    a = seediso.instance_id("c", "c-01", "#cloud-config\na: 1\n")
    assert a == seediso.instance_id("c", "c-01", "#cloud-config\na: 1\n")
    assert a != seediso.instance_id("c", "c-01", "#cloud-config\na: 2\n")
    assert a != seediso.instance_id("c", "c-02", "#cloud-config\na: 1\n")


def test_network_config_static_cluster_nic_and_dhcp_user_nic(iso: Path) -> None:
    net = yaml.safe_load(seediso.read(iso)["network-config"])
    assert net["version"] == 2
    user, cluster = net["ethernets"][seediso.USER_NIC], net["ethernets"][seediso.CLUSTER_NIC]
    assert user["match"]["macaddress"] == "52:54:01:12:00:01"  # a string, not a base-60 integer
    assert user["dhcp4"] is True
    assert cluster["match"]["macaddress"] == "52:54:00:12:00:01"
    assert cluster["addresses"] == ["10.0.0.2/24"]
    assert cluster["dhcp4"] is False
    assert "gateway4" not in cluster and "routes" not in cluster  # the default route stays on the user NIC


def test_seed_is_private(iso: Path) -> None:
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600  # the user-data carries gossip keys


def test_blkid_sees_the_cidata_label(iso: Path) -> None:
    out = proc.run([tool("blkid"), "-o", "export", str(iso)]).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert fields["TYPE"] == "iso9660"
    assert fields["LABEL"] == seediso.LABEL


def test_rock_ridge_names_are_lowercase_for_linux(iso: Path) -> None:
    # xorriso reads the Rock Ridge tree, which is what the Linux kernel mounts.
    out = proc.run([tool("xorriso"), "-indev", str(iso), "-find", "/", "-type", "f"]).stdout
    assert sorted(line.strip("'") for line in out.split()) == ["/meta-data", "/network-config", "/user-data"]


def test_cloud_init_renders_the_network_config(tmp_path: Path, iso: Path) -> None:
    """cloud-init's own converter turns the seed's network-config into systemd-networkd files as intended."""
    net = tmp_path / "network-config"
    net.write_bytes(seediso.read(iso)["network-config"])
    out = tmp_path / "out"
    proc.run([tool("cloud-init"), "devel", "net-convert", "-p", str(net), "-k", "yaml", "-D", "debian",
              "-O", "networkd", "-d", str(out)])
    files = {p.name: p.read_text() for p in (out / "etc/systemd/network").iterdir()}
    cluster = files[f"10-cloud-init-{seediso.CLUSTER_NIC}.network"]
    user = files[f"10-cloud-init-{seediso.USER_NIC}.network"]
    assert "Address=10.0.0.2/24" in cluster and "MACAddress=52:54:00:12:00:01" in cluster
    assert "Gateway" not in cluster
    assert "DHCP=ipv4" in user and "MACAddress=52:54:01:12:00:01" in user
