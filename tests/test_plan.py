"""The cluster plan: roles, addresses and warnings, its invariants over many shapes, and one clear error per bad input."""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from nomadic import config
from nomadic.config import ClusterSettings
from nomadic.errors import ConfigError, PlanError
from nomadic.plan import Role, make_plan, node_name, server_count, usable_addresses

LABEL_RE = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"


def cluster(**values) -> ClusterSettings:
    return replace(ClusterSettings(), **values)


@pytest.mark.parametrize(
    "count, servers, roles, expect",
    [
        (1, 0, ["both"], 1),
        (2, 0, ["both", "both"], 2),
        (3, 0, ["both"] * 3, 3),
        (4, 0, ["both"] * 4, 4),
        (5, 0, ["both"] * 5, 5),
        (6, 0, ["server"] * 3 + ["client"] * 3, 3),
        (7, 0, ["server"] * 3 + ["client"] * 4, 3),
        (7, 5, ["server"] * 5 + ["client"] * 2, 5),
        (6, 6, ["both"] * 6, 6),
        (4, 1, ["both", "client", "client", "client"], 1),
        (3, 3, ["both"] * 3, 3),
    ],
)
def test_roles_follow_the_rule(count, servers, roles, expect):
    plan = make_plan(cluster(count=count, servers=servers))
    assert [n.role.value for n in plan.nodes] == roles
    assert plan.bootstrap_expect == expect
    assert plan.server_addresses == tuple(n.address for n in plan.nodes[:expect])


def test_single_node_has_no_warning_and_takes_the_first_free_address():
    plan = make_plan(cluster(count=1))
    assert plan.warnings == ()
    assert [(n.name, n.address, n.hostname) for n in plan.nodes] == [("nomadic-01", "10.0.0.2", "nomadic-01")]


def test_two_servers_warn_and_recommend_odd_counts():
    plan = make_plan(cluster(count=2))
    assert len(plan.warnings) == 1
    assert "1, 3 or 5" in plan.warnings[0]


@pytest.mark.parametrize("count, servers", [(4, 0), (8, 4), (10, 6)])
def test_even_server_counts_warn(count, servers):
    assert any("odd" in w for w in make_plan(cluster(count=count, servers=servers)).warnings)


@pytest.mark.parametrize("count, servers", [(1, 0), (3, 0), (5, 0), (9, 0), (9, 5), (7, 1)])
def test_odd_server_counts_do_not_warn(count, servers):
    assert make_plan(cluster(count=count, servers=servers)).warnings == ()


def test_many_servers_warn_about_write_latency():
    assert any("slow down" in w for w in server_count(9, 9)[1])


def test_names_are_zero_padded_then_grow():
    assert node_name("c", 1) == "c-01"
    assert node_name("c", 99) == "c-99"
    assert node_name("c", 100) == "c-100"


def test_usable_addresses_skip_what_oci_reserves():
    addrs = usable_addresses("10.0.0.0/24")
    assert addrs[0] == "10.0.0.2" and addrs[-1] == "10.0.0.254" and len(addrs) == 253
    assert usable_addresses("192.168.5.0/30") == ["192.168.5.2"]
    assert usable_addresses("10.0.0.0/31") == [] and usable_addresses("10.0.0.0/32") == []


def test_a_huge_network_is_not_listed_in_full():
    started = time.perf_counter()
    assert usable_addresses("10.0.0.0/8", limit=3) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    plan = make_plan(cluster(count=3, cidr="10.0.0.0/8"), used=["10.0.0.3"])
    assert [n.address for n in plan.nodes] == ["10.0.0.2", "10.0.0.4", "10.0.0.5"]
    assert time.perf_counter() - started < 5  # listing 16 million addresses takes far longer


def test_used_addresses_are_avoided_and_existing_nodes_keep_theirs():
    plan = make_plan(
        cluster(count=4),
        used=["10.0.0.2", "10.0.0.4", "10.0.0.9"],
        existing={"nomadic-02": "10.0.0.9"},
    )
    assert [n.address for n in plan.nodes] == ["10.0.0.3", "10.0.0.9", "10.0.0.5", "10.0.0.6"]


def test_the_plan_is_deterministic():
    a = make_plan(cluster(count=9, servers=5), used=["10.0.0.5"])
    b = make_plan(cluster(count=9, servers=5), used=["10.0.0.5"])
    assert a == b


# --- properties over many shapes ---------------------------------------------------------------------------


@st.composite
def shapes(draw):
    count = draw(st.integers(min_value=1, max_value=50))
    servers = draw(st.one_of(st.just(0), st.integers(min_value=1, max_value=count)))
    prefix = draw(st.sampled_from([16, 20, 24, 25, 26]))
    base = draw(st.sampled_from(["10.0.0.0", "172.16.0.0", "192.168.0.0"]))
    network = ipaddress.IPv4Network(f"{base}/{prefix}")
    window = [str(network.network_address + i) for i in range(0, min(network.num_addresses, 160))]
    used = draw(st.lists(st.sampled_from(window), max_size=40, unique=True))
    keep = draw(st.lists(st.integers(min_value=1, max_value=count), max_size=min(count, 5), unique=True))
    reserved = {str(network.network_address), str(network.network_address + 1), str(network.broadcast_address)}
    candidates = [a for a in window if a not in reserved and a not in used]
    assume(len(candidates) >= len(keep))
    existing = {node_name("nomadic", i): candidates[-(j + 1)] for j, i in enumerate(keep)}
    return count, servers, str(network), used, existing


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(shapes())
def test_plan_invariants(shape):
    count, servers, cidr, used, existing = shape
    network = ipaddress.IPv4Network(cidr)
    try:
        plan = make_plan(cluster(count=count, servers=servers, cidr=cidr), used=used, existing=existing)
    except PlanError as exc:
        # Only a network too small for the nodes may refuse a valid count/servers pair.
        assert "cluster.cidr" in str(exc)
        usable = set(usable_addresses(cidr, limit=count + 200))
        free = usable - set(used) - set(existing.values())
        assert len(free) < count - len(existing)
        return
    nodes = plan.nodes
    expected_servers = servers or (count if count <= 5 else 3)
    assert len(nodes) == count
    assert plan.bootstrap_expect == expected_servers == len(plan.servers)
    assert [n.index for n in nodes] == list(range(1, count + 1))
    names = [n.name for n in nodes]
    assert len(set(names)) == count
    assert all(re.match(LABEL_RE, n) for n in names)
    addresses = [n.address for n in nodes]
    assert len(set(addresses)) == count
    reserved = {network.network_address, network.network_address + 1, network.broadcast_address}
    for node in nodes:
        address = ipaddress.IPv4Address(node.address)
        assert address in network and address not in reserved
        if node.name in existing:
            assert node.address == existing[node.name]
        else:
            assert node.address not in used and node.address not in existing.values()
    # Servers are the first nodes; they share workloads only in small or all-server clusters.
    assert all(n.role.is_server for n in nodes[:expected_servers])
    assert not any(n.role.is_server for n in nodes[expected_servers:])
    shared = count <= 5 or expected_servers == count
    assert {n.role for n in plan.servers} == {Role.BOTH if shared else Role.SERVER}
    assert all(n.role.is_client for n in nodes) if shared else not any(n.role.is_client for n in plan.servers)
    assert set(plan.server_addresses) == {n.address for n in plan.servers}
    assert (len(plan.warnings) > 0) == (expected_servers % 2 == 0 or expected_servers > 7)


# --- bad inputs: one clear line each ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, used, existing, fragment",
    [
        ({"count": 0}, (), None, "cluster.count"),
        ({"count": -3}, (), None, "cluster.count"),
        ({"count": 3, "servers": 4}, (), None, "cluster.servers"),
        ({"count": 3, "servers": -1}, (), None, "cluster.servers"),
        ({"count": 2, "cidr": "10.0.0.0/30"}, (), None, "cluster.cidr"),
        ({"count": 300}, (), None, "cluster.cidr"),
        ({"count": 253}, ["10.0.0.7"], None, "cluster.cidr"),
        ({"cidr": "10.0.0.1/24"}, (), None, "cluster.cidr"),
        ({"cidr": "fd00::/64"}, (), None, "cluster.cidr"),
        ({"name": "Bad_Name"}, (), None, "cluster.name"),
        ({"name": "-x"}, (), None, "cluster.name"),
        ({"name": "a" * 50}, (), None, "cluster.name"),
        ({"datacenter": "dc 1"}, (), None, "cluster.datacenter"),
        ({}, ["not-an-address"], None, "used address"),
        ({"count": 2}, (), {"nomadic-01": "192.168.1.5"}, "outside"),
        ({"count": 2}, (), {"nomadic-01": "10.0.0.5", "nomadic-02": "10.0.0.5"}, "share address"),
    ],
)
def test_bad_inputs_give_one_clear_error(values, used, existing, fragment):
    with pytest.raises(PlanError) as info:
        make_plan(cluster(**values), used=used, existing=existing)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_a_bad_cluster_name_is_refused_when_settings_load(tmp_path: Path):
    with pytest.raises(ConfigError, match="cluster.name"):
        config.load({"cluster": {"name": "Bad_Name"}}, tmp_path)
