"""Cluster health: argv builders, parsers of the real CLIs' tables, and the bounded wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config, health, proc
from nomadic.errors import CloudError
from nomadic.plan import Role
from nomadic.providers.base import NodeStatus

CONSUL_MEMBERS = """\
Node        Address        Status  Type    Build   Protocol  DC   Partition  Segment
nomadic-01  10.0.0.2:8301  alive   server  1.17.0  2         dc1  default    <all>
nomadic-02  10.0.0.3:8301  alive   server  1.17.0  2         dc1  default    <all>
nomadic-03  10.0.0.4:8301  alive   server  1.17.0  2         dc1  default    <all>
"""
RAFT = """\
Node        ID                                    Address        State     Voter  RaftProtocol  Commit Index  Trails Leader By
nomadic-01  0e4c3a7e-5a4c-7bd3-0f8a-6c3e7d1c2b10  10.0.0.2:8300  leader    true   3             421           -
nomadic-02  1f5d4b8f-6b5d-8ce4-1a9b-7d4f8e2d3c21  10.0.0.3:8300  follower  true   3             421           0 commits
"""
NOMAD_SERVERS = """\
Name               Address   Port  Status  Leader  Raft Version  Build  Datacenter  Region
nomadic-01.global  10.0.0.2  4648  alive   true    3             1.7.2  dc1         global
nomadic-02.global  10.0.0.3  4648  alive   false   3             1.7.2  dc1         global
nomadic-03.global  10.0.0.4  4648  alive   false   3             1.7.2  dc1         global
"""
NOMAD_NODES = """\
ID        Node Pool  DC   Name        Class   Drain  Eligibility  Status
3a1b2c4d  default    dc1  nomadic-03  <none>  false  eligible     ready
4b2c3d5e  default    dc1  nomadic-02  <none>  false  eligible     ready
5c3d4e6f  default    dc1  nomadic-01  <none>  false  eligible     ready
"""
HEALTHY = {"consul_members": CONSUL_MEMBERS, "consul_raft": RAFT, "nomad_servers": NOMAD_SERVERS, "nomad_nodes": NOMAD_NODES}


def nodes(n: int = 3) -> list[NodeStatus]:
    return [
        NodeStatus(f"nomadic-0{i}", Role.BOTH, "RUNNING", f"id{i}", f"10.0.0.{i + 1}", f"127.0.1.{i}", f"127.0.1.{i}", 22, "opc")
        for i in range(1, n + 1)
    ]


def test_ssh_argv_is_batch_and_pins_known_hosts(tmp_path: Path) -> None:
    argv = health.ssh_argv(nodes()[0], Path("/k/id"), tmp_path / "known_hosts", ("consul", "members"))
    assert argv[0] == "ssh" and argv[-3:] == ["--", "consul", "members"]
    assert "BatchMode=yes" in argv and f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv
    assert argv[argv.index("-i") + 1] == "/k/id" and argv[argv.index("-l") + 1] == "opc"
    assert "127.0.1.1" in argv


def test_table_parses_columnized_output() -> None:
    rows = health.table(NOMAD_NODES)
    assert rows[0]["Name"] == "nomadic-03" and rows[0]["Status"] == "ready" and rows[0]["Node Pool"] == "default"
    assert health.table("") == []


def test_healthy_cluster_has_no_problems() -> None:
    assert health.problems(health.expected(nodes()), HEALTHY) == []


@pytest.mark.parametrize(
    "key,old,new,problem",
    [
        ("consul_members", "10.0.0.4:8301  alive ", "10.0.0.4:8301  failed", "consul: not alive members: nomadic-03"),
        ("consul_raft", "leader  ", "follower", "consul: no raft leader"),
        ("nomad_servers", "true ", "false", "nomad: no leader"),
        ("nomad_nodes", "eligible     ready", "eligible     down ", "nomad: clients not ready: nomadic-03"),
    ],
)
def test_each_missing_piece_is_named(key: str, old: str, new: str, problem: str) -> None:
    outputs = dict(HEALTHY)
    outputs[key] = outputs[key].replace(old, new, 1)
    assert problem in health.problems(health.expected(nodes()), outputs)


def test_missing_member_is_named() -> None:
    outputs = dict(HEALTHY, consul_members="\n".join(CONSUL_MEMBERS.splitlines()[:3]))
    assert health.problems(health.expected(nodes()), outputs) == ["consul: not alive members: nomadic-03"]


def fake_ssh(answers: dict[str, str], code: int = 0):
    calls: list[list[str]] = []

    def run(argv):
        calls.append(list(argv))
        key = next(k for k, cmd in health.CHECKS.items() if list(argv[-len(cmd):]) == list(cmd))
        return proc.Result(tuple(argv), code, answers.get(key, ""), "")

    return run, calls


def test_wait_returns_once_healthy(tmp_path: Path) -> None:
    settings = config.load({}, tmp_path)
    said: list[str] = []
    states = iter([{}, HEALTHY])
    current: dict[str, str] = {}

    def run(argv):
        nonlocal current
        if argv[-2:] == ["consul", "members"]:
            current = next(states)
        key = next(k for k, cmd in health.CHECKS.items() if list(argv[-len(cmd):]) == list(cmd))
        return proc.Result(tuple(argv), 0, current.get(key, ""), "")

    slept: list[float] = []
    health.wait(settings, nodes(), said.append, run=run, sleep=slept.append, clock=lambda: 0.0)
    assert len(slept) == 1 and said[0].startswith("waiting for the cluster") and said[-1].startswith("cluster healthy")


def test_wait_times_out_with_what_is_wrong(tmp_path: Path) -> None:
    settings = config.load({"cluster": {"wait_timeout_s": 30}}, tmp_path)
    now = [0.0]
    run, _ = fake_ssh({k: v for k, v in HEALTHY.items() if k != "consul_raft"})

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(CloudError, match=r"cluster not healthy after 30s: consul: no raft leader") as info:
        health.wait(settings, nodes(), lambda s: None, run=run, sleep=sleep, clock=lambda: now[0])
    assert "journalctl -u consul -u nomad" in str(info.value)
    assert now[0] <= 30


def test_check_tries_the_next_server_when_ssh_fails(tmp_path: Path) -> None:
    settings = config.load({}, tmp_path)
    calls: list[str] = []

    def run(argv):
        host = argv[-4] if argv[-3] == "--" else argv[-5]
        calls.append(host)
        if host == "127.0.1.1":
            return proc.Result(tuple(argv), 255, "", "ssh: connect to host 127.0.1.1 port 22: Connection refused\n")
        key = next(k for k, cmd in health.CHECKS.items() if list(argv[-len(cmd):]) == list(cmd))
        return proc.Result(tuple(argv), 0, HEALTHY[key], "")

    assert health.check(settings, nodes(), run=run) == []
    assert calls[0] == "127.0.1.1" and calls[1] == "127.0.1.2"


def test_check_through_the_real_ssh_reports_unreachable(tmp_path: Path) -> None:
    """The real ssh client against a loopback port nobody listens on: a problem, not a crash."""
    proc.which("ssh")
    settings = config.load({}, tmp_path)
    node = NodeStatus("nomadic-01", Role.BOTH, "RUNNING", "id", "10.0.0.2", "", "127.0.0.1", 9, "opc")
    found = health.check(settings, [node])
    assert len(found) == 1 and found[0].startswith("no server reachable over SSH (nomadic-01:")


def test_node_health_names_each_nodes_gap() -> None:
    outputs = dict(HEALTHY)
    outputs["nomad_nodes"] = outputs["nomad_nodes"].replace("eligible     ready", "eligible     down ", 1)
    outputs["consul_members"] = "\n".join(CONSUL_MEMBERS.splitlines()[:3])
    verdict = health.node_health(health.expected(nodes()), outputs)
    assert verdict == {"nomadic-01": "ok", "nomadic-02": "ok", "nomadic-03": "consul absent, nomad client down"}


def test_inspect_reports_per_node(tmp_path: Path) -> None:
    settings = config.load({}, tmp_path)
    run, _ = fake_ssh(HEALTHY)
    report = health.inspect(settings, nodes(), run=run)
    assert report.problems == [] and set(report.nodes.values()) == {"ok"}
