"""The "node set forms one cluster" checks, `commands.render`/`validate`, and `invoke render` end to end."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nomadic import agentcheck, clustercheck, commands, config, keys, nodecheck, nodeconfig
from nomadic.errors import ConfigError, RenderError
from nomadic.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent
TEST_KEYS = keys.GossipKeys(
    consul=base64.b64encode(b"consul-gossip-key-for-tests-only").decode(),
    nomad=base64.b64encode(b"nomad-gossip-key-for-tests-only!").decode(),
)


def node_set(tmp_path: Path, count: int, servers: int = 0) -> dict[str, clustercheck.NodeConfig]:
    s = config.load({"cluster": {"count": count, "servers": servers}}, tmp_path)
    plan = make_plan(s.cluster)
    out = {}
    for node in plan.nodes:
        files = nodeconfig.render_node(plan, node, TEST_KEYS, s)
        out[node.name] = clustercheck.NodeConfig(
            node.name,
            clustercheck.parse_hcl(files.consul_hcl, "consul.hcl"),
            clustercheck.parse_hcl(files.nomad_hcl, "nomad.hcl"),
        )
    return out


def failing(nodes) -> dict[str, str]:
    return {c.name: c.detail for c in clustercheck.check_cluster(nodes) if not c.ok}


def edit(nodes, name: str, kind: str, change) -> None:
    """Change one parsed config in place (the dicts are fresh per test)."""
    change(getattr(nodes[name], kind))


@pytest.mark.parametrize("count, servers", [(1, 0), (2, 0), (3, 0), (5, 0), (7, 0), (9, 5)])
def test_rendered_sets_pass_every_check(tmp_path: Path, count: int, servers: int):
    checks = clustercheck.check_cluster(node_set(tmp_path, count, servers))
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    assert len(checks) >= 12


@pytest.mark.parametrize(
    "mutate, failing_check",
    [
        (lambda n: edit(n, "nomadic-02", "consul", lambda c: c.update(datacenter="dc2")), "one datacenter"),
        (lambda n: edit(n, "nomadic-03", "nomad", lambda c: c.update(datacenter="dc2")), "one datacenter"),
        (lambda n: edit(n, "nomadic-04", "consul", lambda c: c.update(encrypt="b3RoZXI=")), "one Consul gossip key"),
        (lambda n: edit(n, "nomadic-01", "nomad", lambda c: c["server"].update(encrypt="x")), "one Nomad gossip key"),
        (
            lambda n: edit(n, "nomadic-02", "consul", lambda c: c.update(bootstrap_expect=2)),
            "bootstrap_expect equals the number of servers",
        ),
        (
            lambda n: edit(n, "nomadic-01", "nomad", lambda c: c["server"].update(bootstrap_expect=5)),
            "bootstrap_expect equals the number of servers",
        ),
        (
            lambda n: edit(n, "nomadic-05", "consul", lambda c: c.update(retry_join=c["retry_join"][:2])),
            "Consul retry_join reaches every server",
        ),
        (
            lambda n: edit(n, "nomadic-05", "consul", lambda c: c.update(retry_join=c["retry_join"] + ["10.0.0.99"])),
            "Consul retry_join reaches every server",
        ),
        (
            lambda n: edit(n, "nomadic-06", "nomad", lambda c: c["client"].update(server_join={"retry_join": []})),
            "Nomad server_join reaches every server",
        ),
        (
            lambda n: edit(n, "nomadic-02", "nomad", lambda c: c["server"]["server_join"].update(retry_join=["10.0.0.2"])),
            "Nomad server_join reaches every server",
        ),
        (lambda n: edit(n, "nomadic-04", "consul", lambda c: c.update(server=True)), "Consul and Nomad servers are the same nodes"),
        (lambda n: edit(n, "nomadic-05", "consul", lambda c: c.update(node_name="nomadic-04")), "unique Consul node names"),
        (lambda n: edit(n, "nomadic-05", "nomad", lambda c: c.update(name="nomadic-04")), "unique Nomad node names"),
        (lambda n: edit(n, "nomadic-05", "consul", lambda c: c.update(advertise_addr="10.0.0.5")), "unique addresses"),
        (
            lambda n: edit(n, "nomadic-05", "nomad", lambda c: c["advertise"].update(rpc="10.0.0.50")),
            "each node binds and advertises one address",
        ),
    ],
)
def test_each_broken_set_is_caught(tmp_path: Path, mutate, failing_check):
    nodes = node_set(tmp_path, 7)
    mutate(nodes)
    bad = failing(nodes)
    assert failing_check in bad, bad
    for detail in bad.values():
        assert TEST_KEYS.consul not in detail and TEST_KEYS.nomad not in detail


def test_no_servers_and_no_nodes_fail(tmp_path: Path):
    nodes = node_set(tmp_path, 1)
    nodes["nomadic-01"].consul["server"] = False
    nodes["nomadic-01"].nomad["server"]["enabled"] = False
    assert "servers present" in failing(nodes)
    assert not clustercheck.check_cluster({})[0].ok


def test_bad_hcl_is_an_error_naming_the_file():
    with pytest.raises(ConfigError) as info:
        clustercheck.parse_hcl('datacenter = "dc1"\nserver = {', "/x/consul.hcl")
    assert str(info.value).startswith("/x/consul.hcl: not valid HCL")
    assert "\n" not in str(info.value)


# --- commands.render / commands.validate ---------------------------------------------------------------------


@pytest.fixture
def image_templates(monkeypatch):
    """The image engineer's render/validate_templates when nomadic.imagebuild exists, else a recorder.

    Either way the calls are recorded so the tests see that render and validate make them.
    """
    calls: list[str] = []
    try:
        from nomadic import imagebuild
    except ImportError:
        imagebuild = types.ModuleType("nomadic.imagebuild")
        imagebuild.render_templates = lambda s: None
        imagebuild.validate_templates = lambda s: None
        monkeypatch.setitem(sys.modules, "nomadic.imagebuild", imagebuild)
        import nomadic

        monkeypatch.setattr(nomadic, "imagebuild", imagebuild, raising=False)
    for fn in ("render_templates", "validate_templates"):
        real = getattr(imagebuild, fn)

        def recorder(settings, _real=real, _fn=fn):
            calls.append(_fn)
            return _real(settings)

        monkeypatch.setattr(imagebuild, fn, recorder)
    return calls


def test_render_prints_the_plan_and_never_a_key(tmp_path: Path, capsys, image_templates):
    s = config.load({"cluster": {"count": 7, "ssh_public_key": str(tmp_path / "none.pub")}}, tmp_path)
    commands.render(s)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "ROLE", "ADDRESS", "HOSTNAME"]
    assert lines[1].split() == ["nomadic-01", "server", "10.0.0.2", "nomadic-01"]
    assert lines[7].split() == ["nomadic-07", "client", "10.0.0.8", "nomadic-07"]
    assert "render_templates" in image_templates
    stored = keys.load(keys.key_path(s))
    assert stored.consul not in out + err and stored.nomad not in out + err
    assert sorted(p.name for p in nodeconfig.nodes_dir(s).iterdir()) == [f"nomadic-0{i}" for i in range(1, 8)]


def test_render_warns_about_two_servers(tmp_path: Path, capsys, image_templates):
    commands.render(config.load({"cluster": {"count": 2}}, tmp_path))
    assert "warning: 2 servers cannot lose one" in capsys.readouterr().err


@pytest.mark.integration
def test_validate_prints_one_line_per_check(tmp_path: Path, capsys, image_templates):
    absent = {"consul": str(tmp_path / "no-consul"), "nomad": str(tmp_path / "no-nomad")}
    s = config.load({"cluster": {"count": 3}, "build": absent}, tmp_path)
    commands.validate(s)
    out = capsys.readouterr().out
    check_lines = [line for line in out.splitlines() if line.split(" ", 1)[0] in {"ok", "FAIL", "skip"}]
    # 5 per node, the cluster's, and one skip line per agent that is not there (tests/test_agentcheck.py runs them)
    assert len(check_lines) == 3 * 5 + len(clustercheck.check_cluster(node_set(tmp_path, 3))) + 2
    assert f"skip  consul validate: {absent['consul']} not found (put it on PATH or set build.consul)" in check_lines
    assert any("cloud-init 24.4 schema" in line for line in check_lines)
    assert not any(line.startswith("FAIL") for line in check_lines)
    assert image_templates == ["render_templates", "validate_templates"]


def test_validate_written_reports_a_broken_user_data(tmp_path: Path):
    s = config.load({"cluster": {"count": 1}}, tmp_path)
    out = nodeconfig.write_nodes(s, make_plan(s.cluster))
    (out / "nomadic-01" / "user-data").write_text("#cloud-config\nhostnme: x\n")
    (out / "nomadic-01" / "nomad.hcl").write_text("server {")
    if shutil.which("cloud-init") is None and not os.environ.get("CI"):
        pytest.skip("cloud-init not installed")
    checks = {c.name: c for c in nodecheck.validate_written(out)}
    assert not checks["nomadic-01/user-data: cloud-init 24.4 schema"].ok
    assert not checks["nomadic-01/nomad.hcl: HCL parses"].ok
    assert checks["nomadic-01/consul.hcl: HCL parses"].ok


def test_validate_fails_with_one_line_when_a_check_fails(tmp_path: Path, monkeypatch, image_templates):
    monkeypatch.setattr(
        nodecheck, "validate_written", lambda d: [clustercheck.Check("x", True), clustercheck.Check("y", False, "z")]
    )
    monkeypatch.setattr(agentcheck, "validate_nodes", lambda d, agents: [])
    with pytest.raises(RenderError) as info:
        commands.validate(config.load({"cluster": {"count": 1}}, tmp_path))
    assert "1 of 2 node checks failed" in str(info.value) and "\n" not in str(info.value)


# --- end to end through invoke -------------------------------------------------------------------------------


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "invoke"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INVOKE_CLUSTER_SSH_PUBLIC_KEY": "/nonexistent.pub"},
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--count", "0"], "cluster.count"),
        (["--count", "-2"], "cluster.count"),
        (["--count", "3", "--servers", "4"], "cluster.servers"),
        (["--count", "300"], "cluster.cidr"),
        (["--count", "1", "--cluster", "Bad_Name"], "cluster.name"),
    ],
)
def test_invoke_render_bad_input_is_one_line_and_writes_nothing(args, fragment):
    cluster = "e2e-bad-input"
    if "--cluster" not in args:
        args = [*args, "--cluster", cluster]
    result = invoke("render", *args)
    assert result.returncode != 0
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (ROOT / "build" / cluster).exists()
    assert not (ROOT / "secrets" / cluster).exists()


@pytest.mark.integration
def test_invoke_render_prints_the_plan_table():
    cluster = "e2e-render-ok"
    try:
        result = invoke("render", "--count", "3", "--servers", "1", "--cluster", cluster)
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()]
        assert ["NODE", "ROLE", "ADDRESS", "HOSTNAME"] in rows
        assert [f"{cluster}-01", "both", "10.0.0.2", f"{cluster}-01"] in rows
        assert [f"{cluster}-03", "client", "10.0.0.4", f"{cluster}-03"] in rows
        assert sorted(p.name for p in (ROOT / "build" / cluster / "nodes").iterdir()) == [
            f"{cluster}-0{i}" for i in (1, 2, 3)
        ]
        stored = keys.load(ROOT / "secrets" / cluster / keys.KEY_FILE)
        assert stored.consul not in result.stdout + result.stderr
    finally:
        shutil.rmtree(ROOT / "build" / cluster, ignore_errors=True)
        shutil.rmtree(ROOT / "secrets" / cluster, ignore_errors=True)
        for folder in (ROOT / "secrets", ROOT / "build"):
            try:
                folder.rmdir()  # only when this test made it and nothing else is there
            except OSError:
                pass
