"""The agents' own validators (`consul validate`, `nomad config validate`) over the rendered nodes.

Real Consul 1.16.3 and Nomad 1.6.3 built by tests/agents.py: skipped when they are not built, failing in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nomadic import agentcheck, commands, config, imagefacts, nodeconfig
from nomadic.errors import RenderError
from nomadic.plan import make_plan
from tests import agents

# (count, servers): the golden cases, and --servers variants (one server; fewer servers than nodes; 5 of 7).
CASES = [(1, 0), (2, 0), (3, 0), (7, 0), (2, 1), (3, 1), (7, 3), (7, 5)]


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    """The built agents; without them skip saying why, except in CI (CI=true), where that fails."""
    try:
        return {name: str(path) for name, path in agents.find().items()}
    except agents.AgentsUnavailable as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def write_nodes(tmp_path: Path, count: int, servers: int = 0) -> Path:
    s = config.load({"cluster": {"count": count, "servers": servers}}, tmp_path)
    return nodeconfig.write_nodes(s, make_plan(s.cluster))


def edit_config(node_dir: Path, path: str, change) -> None:
    """Change one file the node's user-data writes (what the validators read), keeping the rest."""
    user_data = node_dir / "user-data"
    data = yaml.safe_load(user_data.read_text())
    entry = next(f for f in data["write_files"] if f["path"] == path)
    entry["content"] = change(entry["content"])
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(("count", "servers"), CASES)
def test_every_rendered_config_passes_both_validators(tmp_path: Path, binaries, count: int, servers: int):
    checks = agentcheck.validate_nodes(write_nodes(tmp_path, count, servers), binaries)
    assert len(checks) == 2 * count
    assert {c.name.split(":")[1].strip() for c in checks} == {"consul validate", "nomad config validate"}
    assert [c.line() for c in checks if not c.ok or c.skipped or c.detail] == []


def test_consul_validate_rejects_a_broken_config(tmp_path: Path, binaries):
    nodes = write_nodes(tmp_path, 3)
    edit_config(nodes / "nomadic-02", imagefacts.CONSUL_CONFIG_FILE,
                lambda text: text.replace("bootstrap_expect = 3", 'bootstrap_expect = "three"'))
    checks = {c.name: c for c in agentcheck.validate_nodes(nodes, binaries)}
    bad = checks["nomadic-02/consul.hcl: consul validate"]
    assert not bad.ok
    # Names the node's file, then Consul's own words (its decoder names the key it could not read).
    assert bad.detail.startswith("/etc/consul.d/consul.hcl rejected (exit 1): ")
    assert "bootstrap_expect" in bad.detail and "\n" not in bad.detail
    assert str(tmp_path) not in bad.detail.replace(str(nodes), "")  # scratch folders never shown
    assert [n for n, c in checks.items() if not c.ok] == ["nomadic-02/consul.hcl: consul validate"]


def test_nomad_config_validate_rejects_a_broken_config(tmp_path: Path, binaries):
    nodes = write_nodes(tmp_path, 3)
    edit_config(nodes / "nomadic-03", imagefacts.NOMAD_CONFIG_FILE,
                lambda text: text.replace("bootstrap_expect = 3", "bootstrap_expect = -3"))
    checks = {c.name: c for c in agentcheck.validate_nodes(nodes, binaries)}
    bad = checks["nomadic-03/nomad.hcl: nomad config validate"]
    assert not bad.ok
    assert bad.detail.startswith("/etc/nomad.d/nomad.hcl rejected (exit 1): ")
    assert "bootstrap_expect" in bad.detail.lower() or "bootstrapexpect" in bad.detail.lower()
    assert [n for n, c in checks.items() if not c.ok] == ["nomadic-03/nomad.hcl: nomad config validate"]


def test_a_user_data_without_the_config_fails_the_check(tmp_path: Path, binaries):
    nodes = write_nodes(tmp_path, 1)
    user_data = nodes / "nomadic-01" / "user-data"
    data = yaml.safe_load(user_data.read_text())
    data["write_files"] = [f for f in data["write_files"] if f["path"] != imagefacts.NOMAD_CONFIG_FILE]
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(data))
    checks = {c.name: c for c in agentcheck.validate_nodes(nodes, binaries)}
    assert checks["nomadic-01/nomad.hcl: nomad config validate"].detail == "user-data writes no file into /etc/nomad.d"


def test_absent_agents_are_one_skip_line_each(tmp_path: Path):
    nodes = write_nodes(tmp_path, 2)
    checks = agentcheck.validate_nodes(nodes, {"consul": str(tmp_path / "nope"), "nomad": ""})
    assert [c.line() for c in checks] == [
        f"skip  consul validate: {tmp_path / 'nope'} not found (put it on PATH or set build.consul)",
        "skip  nomad config validate: nomad not found (put it on PATH or set build.nomad)",
    ]


def test_invoke_validate_names_the_node_and_file_when_an_agent_rejects_it(tmp_path: Path, binaries, capsys,
                                                                        monkeypatch):
    """commands.validate end to end with the real agents: all ok, then one broken node is one clear error."""
    s = config.load({"cluster": {"count": 2}, "build": binaries}, tmp_path)
    commands.validate(s)
    out = capsys.readouterr().out
    assert "ok    nomadic-01/consul.hcl: consul validate" in out.splitlines()
    assert "ok    nomadic-02/nomad.hcl: nomad config validate" in out.splitlines()

    real_render = commands.render

    def render_then_break(settings):
        real_render(settings)
        node = nodeconfig.nodes_dir(settings) / "nomadic-01"
        edit_config(node, imagefacts.CONSUL_CONFIG_FILE, lambda text: text + "no_such_setting = true\n")

    monkeypatch.setattr(commands, "render", render_then_break)
    with pytest.raises(RenderError) as info:
        commands.validate(s)
    assert str(info.value).startswith("1 of ")
    assert "(first: nomadic-01/consul.hcl: consul validate)" in str(info.value)
    fail = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and "no_such_setting" in fail[0] and "/etc/consul.d/consul.hcl" in fail[0]
