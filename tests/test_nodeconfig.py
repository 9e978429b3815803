"""Per-node Consul/Nomad HCL and cloud-init user-data: content, golden files, both schemas, size limit, writing.

Regenerate the golden files after an intended template change with:
    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_nodeconfig.py
"""

from __future__ import annotations

import base64
import os
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from nomadic import clustercheck, config, imagefacts, keys, nodecheck, nodeconfig
from nomadic.errors import ConfigError
from nomadic.plan import Role, make_plan

GOLDEN = Path(__file__).parent / "golden" / "nodes"
# Fixed test keys (32 bytes each, as real ones): golden files must not change from run to run.
TEST_KEYS = keys.GossipKeys(
    consul=base64.b64encode(b"consul-gossip-key-for-tests-only").decode(),
    nomad=base64.b64encode(b"nomad-gossip-key-for-tests-only!").decode(),
)
CASES = (1, 2, 3, 5, 7)
GOLDEN_CASES = (1, 2, 3, 7)


def settings_for(tmp_path: Path, count: int, servers: int = 0, **cluster) -> config.Settings:
    return config.load({"cluster": {"count": count, "servers": servers, **cluster}}, tmp_path)


def rendered(tmp_path: Path, count: int, servers: int = 0):
    s = settings_for(tmp_path, count, servers)
    plan = make_plan(s.cluster)
    return s, plan, {n.name: nodeconfig.render_node(plan, n, TEST_KEYS, s) for n in plan.nodes}


def parsed(files: nodeconfig.NodeFiles) -> tuple[dict, dict]:
    return clustercheck.parse_hcl(files.consul_hcl, "consul.hcl"), clustercheck.parse_hcl(files.nomad_hcl, "nomad.hcl")


# --- golden files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", GOLDEN_CASES)
def test_golden_files(tmp_path: Path, count: int):
    _, _, nodes = rendered(tmp_path, count)
    case = GOLDEN / str(count)
    if os.environ.get("UPDATE_GOLDEN"):
        for name, files in nodes.items():
            (case / name).mkdir(parents=True, exist_ok=True)
            (case / name / "user-data").write_text(files.user_data)
            (case / name / "consul.hcl").write_text(files.consul_hcl)
            (case / name / "nomad.hcl").write_text(files.nomad_hcl)
    assert sorted(p.name for p in case.iterdir()) == sorted(nodes), "node set changed: rerun with UPDATE_GOLDEN=1"
    for name, files in nodes.items():
        assert (case / name / "user-data").read_text() == files.user_data, f"{name}/user-data"
        assert (case / name / "consul.hcl").read_text() == files.consul_hcl, f"{name}/consul.hcl"
        assert (case / name / "nomad.hcl").read_text() == files.nomad_hcl, f"{name}/nomad.hcl"


# --- HCL content -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", CASES)
def test_consul_config_carries_the_plan(tmp_path: Path, count: int):
    _, plan, nodes = rendered(tmp_path, count)
    for node in plan.nodes:
        consul, _ = parsed(nodes[node.name])
        assert consul["datacenter"] == "dc1"
        assert consul["node_name"] == node.name
        assert consul["data_dir"] == imagefacts.CONSUL_DATA_DIR.path
        assert consul["server"] is node.role.is_server
        assert consul["bind_addr"] == consul["advertise_addr"] == node.address
        assert consul["client_addr"] == "127.0.0.1"
        assert consul["retry_join"] == list(plan.server_addresses)
        assert consul["encrypt"] == TEST_KEYS.consul
        if node.role.is_server:
            assert consul["bootstrap_expect"] == plan.bootstrap_expect
            assert consul["ui_config"] == {"enabled": True}
        else:
            assert "bootstrap_expect" not in consul and "ui_config" not in consul


@pytest.mark.parametrize("count", CASES)
def test_nomad_config_carries_the_plan(tmp_path: Path, count: int):
    _, plan, nodes = rendered(tmp_path, count)
    for node in plan.nodes:
        _, nomad = parsed(nodes[node.name])
        assert nomad["datacenter"] == "dc1"
        assert nomad["name"] == node.name
        assert nomad["data_dir"] == imagefacts.NOMAD_DATA_DIR.path
        assert nomad["bind_addr"] == node.address
        assert nomad["addresses"] == {"http": f"127.0.0.1 {node.address}"}
        assert nomad["advertise"] == {"http": node.address, "rpc": node.address, "serf": node.address}
        assert nomad["consul"] == {"address": "127.0.0.1:8500"}
        docker = nomad["plugin"]["docker"]["config"]
        assert docker["allow_privileged"] is False and docker["volumes"] == {"enabled": False}
        server, client = nomad["server"], nomad["client"]
        assert server["enabled"] is node.role.is_server
        assert client["enabled"] is node.role.is_client
        if node.role.is_server:
            assert server["bootstrap_expect"] == plan.bootstrap_expect
            assert server["encrypt"] == TEST_KEYS.nomad
            assert server["server_join"] == {"retry_join": list(plan.server_addresses)}
        else:
            assert set(server) == {"enabled"}  # a client holds no server key
        if node.role.is_client:
            assert node.address.replace(".", "[.]") in client["network_interface"]
            expected = nodeconfig.RESERVED[node.role]
            assert client["reserved"] == expected
            assert 0 < expected["memory"] <= 512  # a 1 GB node must keep most memory for jobs
        else:
            assert set(client) == {"enabled"}
        if node.role is Role.CLIENT:
            assert client["server_join"] == {"retry_join": list(plan.server_addresses)}


def test_roles_by_cluster_size(tmp_path: Path):
    assert [n.role for n in rendered(tmp_path, 5)[1].nodes] == [Role.BOTH] * 5
    _, plan, nodes = rendered(tmp_path, 7)
    consul, nomad = parsed(nodes["nomadic-01"])
    assert consul["server"] and nomad["server"]["enabled"] and not nomad["client"]["enabled"]
    consul, nomad = parsed(nodes["nomadic-07"])
    assert not consul["server"] and not nomad["server"]["enabled"] and nomad["client"]["enabled"]


def test_network_interface_template_selects_only_the_nodes_address():
    template = nodeconfig.network_interface("10.0.0.2")
    assert template.startswith("{{ GetAllInterfaces | include \"address\" ") and template.endswith('| attr "name" }}')
    pattern = re.search(r'include "address" "([^"]+)"', template).group(1)
    assert "\\" not in pattern  # Go template strings reject \. escapes
    rx = re.compile(pattern)  # the pattern uses only syntax Go's RE2 and Python share
    for hit in ("10.0.0.2/24", "10.0.0.2"):
        assert rx.search(hit)
    for miss in ("10.0.0.20/24", "110.0.0.2/24", "10x0x0x2/24", "10.0.0.23", "172.17.0.1/16"):
        assert not rx.search(miss)


@hsettings(max_examples=12, deadline=None)
@given(count=st.integers(min_value=1, max_value=50), servers=st.integers(min_value=0, max_value=50))
def test_rendered_sets_always_form_one_cluster(tmp_path_factory, count, servers):
    """Property: whatever the shape, the parsed configs pass every cluster check (bootstrap_expect, joins, ...)."""
    servers = min(servers, count)
    s = settings_for(tmp_path_factory.mktemp("p"), count, servers)
    plan = make_plan(s.cluster)
    configs = {}
    for node in plan.nodes:
        consul, nomad = parsed(nodeconfig.render_node(plan, node, TEST_KEYS, s))
        configs[node.name] = clustercheck.NodeConfig(node.name, consul, nomad)
        if node.role.is_server:
            assert consul["bootstrap_expect"] == nomad["server"]["bootstrap_expect"] == plan.bootstrap_expect
        assert set(consul["retry_join"]) == set(plan.server_addresses)
    bad = clustercheck.failed(clustercheck.check_cluster(configs))
    assert not bad, [c.line() for c in bad]


# --- user-data ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", CASES)
def test_user_data_installs_both_configs_and_the_firewall(tmp_path: Path, count: int):
    _, plan, nodes = rendered(tmp_path, count)
    for node in plan.nodes:
        files = nodes[node.name]
        assert files.user_data.startswith("#cloud-config\n")
        data = yaml.safe_load(files.user_data)
        assert data["hostname"] == node.hostname
        assert data["preserve_hostname"] is False
        written = {f["path"]: f for f in data["write_files"]}
        consul = written[imagefacts.CONSUL_CONFIG_FILE]
        nomad = written[imagefacts.NOMAD_CONFIG_FILE]
        assert consul["content"] == files.consul_hcl and nomad["content"] == files.nomad_hcl
        assert (consul["owner"], consul["permissions"]) == ("root:consul", "0640")
        assert (nomad["owner"], nomad["permissions"]) == ("root:root", "0640")
        assert not any(f.get("defer") for f in data["write_files"])  # the consul group exists in the image

        zone = ET.fromstring(written[nodeconfig.ZONE_FILE]["content"])
        assert [s.get("address") for s in zone.findall("source")] == [plan.cidr]
        assert {s.get("name") for s in zone.findall("service")} == {"ssh", "consul", "nomad"}
        ports = {(p.get("protocol"), p.get("port")) for p in zone.findall("port")}
        assert ports == {("tcp", "20000-32000"), ("udp", "20000-32000")}
        # Nothing opens the public zone: no firewall-cmd call adds ports or services there. The agents (shipped
        # disabled) are enabled and started only after the zone is loaded, without cloud-init waiting for peers.
        assert data["runcmd"] == [
            ["firewall-cmd", "--reload"],
            ["systemctl", "enable", "--now", "--no-block", "consul.service", "nomad.service"],
        ]


@pytest.fixture(scope="module")
def validator_24_4():
    return nodecheck._validator_24_4()


@pytest.mark.parametrize("count", CASES)
def test_user_data_passes_cloud_init_24_4_schema(tmp_path: Path, count: int, validator_24_4):
    """Schema: cloud-init 24.4's cloud-config schema (what AlmaLinux 9 ships), Draft4Validator, vendored in
    cloud-init/schemas/; it rejects unknown top-level keys."""
    for name, files in rendered(tmp_path, count)[2].items():
        assert nodecheck.schema_errors_24_4(files.user_data) == [], name


def test_the_24_4_schema_check_catches_mistakes():
    """Schema: cloud-init 24.4 (vendored): an unknown key and a numeric mode are both reported."""
    errors = nodecheck.schema_errors_24_4(
        "#cloud-config\nhostnme: x\nwrite_files:\n  - path: /a\n    permissions: 0640\n"
    )
    assert any("hostnme" in e for e in errors)
    assert any(e.startswith("write_files.0.permissions") for e in errors)
    assert nodecheck.schema_errors_24_4("hostname: x\n") == ["does not start with a '#cloud-config' line"]


def _cloud_init_available() -> None:
    if nodecheck.cloud_init_version() == "":
        if os.environ.get("CI"):
            pytest.fail("cloud-init is not installed (bin/setup --test installs it)")
        pytest.skip("cloud-init not installed")


@pytest.mark.integration
@pytest.mark.parametrize("count", GOLDEN_CASES)
def test_user_data_passes_installed_cloud_init_schema(tmp_path: Path, count: int):
    """Schema: the installed cloud-init's own validator (Debian 12: 22.4), `cloud-init schema --config-file`."""
    _cloud_init_available()
    for name, files in rendered(tmp_path, count)[2].items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(files.user_data)
        check = nodecheck.cloud_init_schema_check(path, name)
        assert check.ok and not check.skipped, check.line()


@pytest.mark.integration
def test_installed_cloud_init_schema_check_catches_mistakes(tmp_path: Path):
    """Schema: installed cloud-init (22.4): a wrongly typed value fails."""
    _cloud_init_available()
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /a\n    permissions: 0640\n")
    check = nodecheck.cloud_init_schema_check(path, "bad")
    assert not check.ok and "permissions" in check.detail


@pytest.mark.integration
@pytest.mark.parametrize("count", (1, 7))
def test_firewalld_accepts_the_zone(tmp_path: Path, count: int):
    """firewalld's own zone reader (python3-firewall) parses every node's zone without error."""
    for name, files in rendered(tmp_path, count)[2].items():
        check = nodecheck.firewalld_zone_check(files.user_data, name)
        if check.skipped:
            pytest.skip(check.detail)  # never in CI: there the check itself fails
        assert check.ok, check.line()


@pytest.mark.integration
def test_firewalld_zone_check_catches_a_bad_zone(tmp_path: Path):
    user_data = rendered(tmp_path, 1)[2]["nomadic-01"].user_data
    broken = user_data.replace('port="20000-32000"', 'port="20000-99999"')
    check = nodecheck.firewalld_zone_check(broken, "broken")
    if check.skipped:
        pytest.skip(check.detail)
    assert not check.ok and "20000-99999" in check.detail
    assert not nodecheck.firewalld_zone_check("#cloud-config\nhostname: x\n", "none").ok


# --- OCI metadata size -------------------------------------------------------------------------------------


def test_rendered_user_data_fits_oci_metadata_with_a_large_ssh_key(tmp_path: Path):
    rsa_4096 = "ssh-rsa " + "A" * 716 + " user@host"
    for name, files in rendered(tmp_path, 7)[2].items():
        metadata = nodeconfig.oci_metadata(files.user_data, rsa_4096)
        assert base64.b64decode(metadata["user_data"]).decode() == files.user_data
        nodeconfig.check_metadata_size(metadata, node=name)
        assert nodeconfig.metadata_size(metadata) < 8_000  # far from the limit: room for later additions


def test_metadata_size_limit_boundary():
    overhead = nodeconfig.metadata_size({"user_data": ""})
    nodeconfig.check_metadata_size({"user_data": "A" * (32_000 - overhead)})
    with pytest.raises(ConfigError) as info:
        nodeconfig.check_metadata_size({"user_data": "A" * (32_001 - overhead)}, node="nomadic-03")
    message = str(info.value)
    assert "nomadic-03" in message and "32001 bytes" in message and "32000" in message
    assert "\n" not in message


def test_the_size_check_counts_user_data_after_base64():
    # 24,000 bytes of user-data are 32,000 after base64: with any other metadata it is over the limit.
    metadata = nodeconfig.oci_metadata("x" * 24_000, "ssh-ed25519 AAAA k")
    with pytest.raises(ConfigError, match="over OCI's limit"):
        nodeconfig.check_metadata_size(metadata, node="n")


def test_render_fails_before_writing_when_a_node_is_over_the_limit(tmp_path: Path):
    key = tmp_path / "huge.pub"
    # A well-formed ssh-rsa line (type name, then a 22,000-byte field), far over OCI's metadata limit.
    blob = b"\x00\x00\x00\x07ssh-rsa" + (22_000).to_bytes(4, "big") + b"\x01" * 22_000
    key.write_text("ssh-rsa " + base64.b64encode(blob).decode() + " big@host\n")
    s = config.load({"cluster": {"count": 2, "ssh_public_key": str(key)}}, tmp_path)
    with pytest.raises(ConfigError, match="nomadic-01"):
        nodeconfig.write_nodes(s, make_plan(s.cluster))
    assert not nodeconfig.nodes_dir(s).exists()


# --- writing -----------------------------------------------------------------------------------------------


def test_write_nodes_writes_private_files_and_drops_stale_nodes(tmp_path: Path):
    s = settings_for(tmp_path, 4)
    out = nodeconfig.write_nodes(s, make_plan(s.cluster))
    assert out == tmp_path / "build" / "nomadic" / "nodes"
    assert sorted(p.name for p in out.iterdir()) == [f"nomadic-0{i}" for i in range(1, 5)]
    for node_dir in out.iterdir():
        assert stat.S_IMODE(node_dir.stat().st_mode) == 0o700
        assert sorted(p.name for p in node_dir.iterdir()) == sorted(nodeconfig.FILE_NAMES)
        for f in node_dir.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
    key = keys.load(keys.key_path(s))
    assert f'encrypt    = "{key.consul}"' in (out / "nomadic-01" / "consul.hcl").read_text()

    s3 = settings_for(tmp_path, 2)
    nodeconfig.write_nodes(s3, make_plan(s3.cluster))
    assert sorted(p.name for p in out.iterdir()) == ["nomadic-01", "nomadic-02"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".nodes")]  # no staging leftovers
    assert keys.load(keys.key_path(s3)) == key  # same cluster, same keys


def test_render_node_is_pure(tmp_path: Path):
    s, plan, nodes = rendered(tmp_path, 3)
    node = plan.nodes[1]
    assert nodeconfig.render_node(plan, node, TEST_KEYS, s) == nodes[node.name]
    other = keys.GossipKeys(consul=TEST_KEYS.nomad, nomad=TEST_KEYS.consul)
    changed = nodeconfig.render_node(plan, node, other, s)
    assert changed.consul_hcl.replace(TEST_KEYS.nomad, TEST_KEYS.consul) == nodes[node.name].consul_hcl
