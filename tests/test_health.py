"""Cluster health: argv builders, parsers of the real CLIs' tables, and the bounded wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config, health, proc
from nomadic.errors import CloudError
from nomadic.plan import Role
from nomadic.providers.base import NodeStatus

# Recorded from the real agents (see tests/data/health/README.md).
RECORDED = Path(__file__).parent / "data" / "health"
CONSUL_MEMBERS = (RECORDED / "consul_members.txt").read_text()
RAFT = (RECORDED / "consul_raft.txt").read_text()
NOMAD_SERVERS = (RECORDED / "nomad_servers.txt").read_text()
NOMAD_NODES = (RECORDED / "nomad_nodes.txt").read_text()
HEALTHY = {"consul_members": CONSUL_MEMBERS, "consul_raft": RAFT, "nomad_servers": NOMAD_SERVERS, "nomad_nodes": NOMAD_NODES}


def nodes(n: int = 3) -> list[NodeStatus]:
    return [
        NodeStatus(f"vmx-0{i}", Role.BOTH, "RUNNING", f"id{i}", f"10.0.0.{i + 1}", f"127.0.1.{i}", f"127.0.1.{i}", 22, "opc")
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
    assert rows[0]["Name"] == "vmx-02" and rows[0]["Status"] == "ready" and rows[0]["Node Pool"] == "default"
    assert health.table("") == []


def test_healthy_cluster_has_no_problems() -> None:
    assert health.problems(health.expected(nodes()), HEALTHY) == []


@pytest.mark.parametrize(
    "key,old,new,problem",
    [
        ("consul_members", "10.0.0.4:8301  alive ", "10.0.0.4:8301  failed", "consul: not alive members: vmx-03"),
        ("consul_raft", "leader  ", "follower", "consul: no raft leader"),
        ("nomad_servers", "true ", "false", "nomad: no leader"),
        ("nomad_nodes", "eligible     ready", "eligible     down ", "nomad: clients not ready: vmx-02"),
    ],
)
def test_each_missing_piece_is_named(key: str, old: str, new: str, problem: str) -> None:
    outputs = dict(HEALTHY)
    outputs[key] = outputs[key].replace(old, new, 1)
    assert problem in health.problems(health.expected(nodes()), outputs)


def test_missing_member_is_named() -> None:
    outputs = dict(HEALTHY, consul_members="\n".join(CONSUL_MEMBERS.splitlines()[:3]))
    assert health.problems(health.expected(nodes()), outputs) == ["consul: not alive members: vmx-03"]


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
    assert verdict == {"vmx-01": "ok", "vmx-02": "nomad client down", "vmx-03": "consul absent"}


def test_inspect_reports_per_node(tmp_path: Path) -> None:
    settings = config.load({}, tmp_path)
    run, _ = fake_ssh(HEALTHY)
    report = health.inspect(settings, nodes(), run=run)
    assert report.problems == [] and set(report.nodes.values()) == {"ok"}
