"""inventory.ini, ssh_config and the summary table from node states (pure)."""

from __future__ import annotations

import configparser
from pathlib import Path

from nomadic import config, outputs
from nomadic.plan import Role
from nomadic.providers.base import NodeStatus


def sample() -> list[NodeStatus]:
    return [
        NodeStatus("demo-04", Role.CLIENT, "RUNNING", "ocid4", "10.0.0.5", "", "10.0.0.5", 22, "opc"),
        NodeStatus("demo-01", Role.SERVER, "RUNNING", "ocid1", "10.0.0.2", "192.0.2.10", "192.0.2.10", 22, "opc"),
        NodeStatus("demo-02", Role.BOTH, "PROVISIONING", "ocid2", "10.0.0.3", "192.0.2.11", "192.0.2.11", 2222, "opc"),
    ]


def settings(tmp_path: Path) -> config.Settings:
    return config.load({"cluster": {"name": "demo", "ssh_private_key": "/keys/id"}}, tmp_path)


def test_inventory_groups(tmp_path: Path) -> None:
    text = outputs.inventory_text(settings(tmp_path), sample())
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",))
    parser.read_string(text.replace("[all:vars]", "[vars]"))
    servers = list(parser["servers"])
    clients = list(parser["clients"])
    assert [s.split()[0] for s in servers] == ["demo-01", "demo-02"]
    assert [c.split()[0] for c in clients] == ["demo-02", "demo-04"]
    assert "demo-01 ansible_host=192.0.2.10 ansible_user=opc private_ip=10.0.0.2" in text
    assert "demo-02 ansible_host=192.0.2.11 ansible_user=opc ansible_port=2222 private_ip=10.0.0.3" in text
    assert "ansible_ssh_private_key_file=/keys/id" in text


def test_ssh_config_hosts_and_tunnel(tmp_path: Path) -> None:
    s = settings(tmp_path)
    text = outputs.ssh_config_text(s, sample())
    blocks = {b.splitlines()[0]: b for b in text.split("\n\n") if b.startswith("Host ")}
    assert set(blocks) == {"Host demo-01", "Host demo-02", "Host demo-04", "Host demo-ui"}
    assert "HostName 10.0.0.5" in blocks["Host demo-04"]
    assert "Port 2222" in blocks["Host demo-02"]
    ui = blocks["Host demo-ui"]
    assert "HostName 192.0.2.10" in ui  # the first server
    assert "LocalForward 4646 127.0.0.1:4646" in ui and "LocalForward 8500 127.0.0.1:8500" in ui
    assert f"UserKnownHostsFile {s.cluster_dir / 'known_hosts'}" in ui and "IdentityFile /keys/id" in ui


def test_ssh_config_parses_with_real_ssh(tmp_path: Path) -> None:
    import shutil
    import subprocess

    s = settings(tmp_path)
    outputs.write(s, sample())
    ssh = shutil.which("ssh")
    assert ssh, "ssh client missing (openssh-client)"
    out = subprocess.run(
        [ssh, "-G", "-F", str(s.cluster_dir / "ssh_config"), "demo-ui"], capture_output=True, text=True, check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    assert "localforward 4646 [127.0.0.1]:4646" in out and "localforward 8500 [127.0.0.1]:8500" in out
    assert "hostname 192.0.2.10" in out


def test_table_sorted_with_health(tmp_path: Path) -> None:
    text = outputs.table(sample(), health={"demo-01": "ok"})
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["NAME", "ROLE", "STATE", "HEALTH"]
    assert [ln.split()[0] for ln in lines[1:]] == ["demo-01", "demo-02", "demo-04"]
    assert "opc@192.0.2.11:2222" in text


def test_write_and_remove(tmp_path: Path) -> None:
    s = settings(tmp_path)
    paths = outputs.write(s, sample())
    assert [p.name for p in paths] == ["inventory.ini", "ssh_config"] and all(p.exists() for p in paths)
    (s.cluster_dir / "known_hosts").write_text("x")
    removed = outputs.remove(s)
    assert len(removed) == 3 and not any(p.exists() for p in removed)
