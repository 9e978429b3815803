"""Checks that a set of rendered node configs forms one Consul + Nomad cluster (read back from the files)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError, ToolMissing


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False  # the tool is absent here (never in CI, where that is a failure)

    def line(self) -> str:
        status = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        return f"{status:<5} {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class NodeConfig:
    """One node's Consul and Nomad configs as parsed from HCL (blocks flattened to dicts)."""

    name: str
    consul: Mapping[str, Any]
    nomad: Mapping[str, Any]


def _flatten(value: Any) -> Any:
    """python-hcl2 gives each block as a list of dicts: make single blocks plain dicts, drop its markers."""
    if isinstance(value, dict):
        return {k: _flatten(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value) and len(value) == 1:
            return _flatten(value[0])
        return [_flatten(v) for v in value]
    return value


def parse_hcl(text: str, where: str) -> dict[str, Any]:
    """Parse HCL with python-hcl2 (strings unquoted); a syntax error names the file."""
    try:
        import hcl2
    except ImportError:
        raise ToolMissing(
            "python-hcl2 is not installed, so HCL files cannot be parsed",
            hint="install the dev extra: .venv/bin/pip install -e '.[dev]'",
        ) from None
    try:
        from hcl2.utils import SerializationOptions

        options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
        data = hcl2.loads(text, serialization_options=options)
    except ImportError:  # python-hcl2 before 7 returns unquoted strings already
        data = hcl2.loads(text)
    except Exception as exc:  # the parser raises lark's many exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(f"{where}: not valid HCL: {first}") from None
    return _flatten(data)


def load_node_set(nodes_dir: Path) -> dict[str, NodeConfig]:
    """Every node folder under `nodes_dir` (as write_nodes made it), parsed."""
    if not nodes_dir.is_dir():
        raise ConfigError(f"{nodes_dir} does not exist", hint="run `invoke render` first")
    nodes: dict[str, NodeConfig] = {}
    for node_dir in sorted(p for p in nodes_dir.iterdir() if p.is_dir()):
        parsed = {}
        for kind in ("consul", "nomad"):
            path = node_dir / f"{kind}.hcl"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="run `invoke render` again") from None
            parsed[kind] = parse_hcl(text, str(path))
        nodes[node_dir.name] = NodeConfig(node_dir.name, parsed["consul"], parsed["nomad"])
    return nodes


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _host(address: Any) -> str:
    """'10.0.0.2:4647' -> '10.0.0.2' (retry_join entries may carry a port)."""
    text = str(address)
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def is_consul_server(node: NodeConfig) -> bool:
    return _get(node.consul, "server") is True


def is_nomad_server(node: NodeConfig) -> bool:
    return _get(node.nomad, "server", "enabled") is True


def is_nomad_client(node: NodeConfig) -> bool:
    return _get(node.nomad, "client", "enabled") is True


def _one_value(name: str, values: Mapping[str, Any], what: str) -> Check:
    missing = sorted(n for n, v in values.items() if v in (None, ""))
    if missing:
        return Check(name, False, f"{what} missing on {', '.join(missing)}")
    distinct = set(values.values())
    if len(distinct) != 1:
        groups = {v: sorted(n for n, x in values.items() if x == v) for v in distinct}
        return Check(name, False, f"{len(distinct)} different {what}s: " + "; ".join(
            ", ".join(names) for names in sorted(groups.values())
        ))
    # The value itself may be a secret (gossip keys): say how many agree, never what it is.
    return Check(name, True, f"all {len(values)} agree")


def _unique(name: str, values: Mapping[str, Any], what: str) -> Check:
    counts = Counter(values.values())
    dupes = sorted(str(v) for v, c in counts.items() if c > 1)
    if dupes:
        return Check(name, False, f"duplicate {what}: {', '.join(dupes)}")
    return Check(name, True, f"{len(values)} distinct")


def _joins(name: str, joins: Mapping[str, Iterable[Any]], servers: set[str]) -> Check:
    problems = []
    for node, entries in sorted(joins.items()):
        hosts = {_host(e) for e in entries}
        missing = sorted(servers - hosts)
        stray = sorted(hosts - servers)
        if missing:
            problems.append(f"{node} cannot reach {', '.join(missing)}")
        if stray:
            problems.append(f"{node} joins non-servers {', '.join(stray)}")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{len(joins)} nodes reach all {len(servers)} servers")


def check_cluster(nodes: Mapping[str, NodeConfig]) -> list[Check]:
    """Every cluster-level check, each a Check (none raise): one datacenter, one key, quorum and joins agree."""
    if not nodes:
        return [Check("nodes present", False, "no node configs found")]
    checks: list[Check] = []
    consul_servers = {n: c for n, c in nodes.items() if is_consul_server(c)}
    nomad_servers = {n: c for n, c in nodes.items() if is_nomad_server(c)}

    checks.append(
        Check("servers present", bool(consul_servers) and bool(nomad_servers),
              f"{len(consul_servers)} Consul, {len(nomad_servers)} Nomad servers")
    )
    disagree = sorted(n for n, c in nodes.items() if is_consul_server(c) != is_nomad_server(c))
    checks.append(
        Check("Consul and Nomad servers are the same nodes", not disagree,
              f"differ on {', '.join(disagree)}" if disagree else f"{len(consul_servers)} servers")
    )
    clients = sorted(n for n, c in nodes.items() if is_nomad_client(c))
    checks.append(Check("Nomad clients present", bool(clients), f"{len(clients)} clients"))

    datacenters = {f"{n} (consul)": _get(c.consul, "datacenter") for n, c in nodes.items()}
    datacenters.update({f"{n} (nomad)": _get(c.nomad, "datacenter") for n, c in nodes.items()})
    checks.append(_one_value("one datacenter", datacenters, "datacenter"))
    checks.append(_one_value("one Consul gossip key", {n: _get(c.consul, "encrypt") for n, c in nodes.items()}, "key"))
    if nomad_servers:
        checks.append(_one_value(
            "one Nomad gossip key", {n: _get(c.nomad, "server", "encrypt") for n, c in nomad_servers.items()}, "key"
        ))

    wrong_expect = []
    for n in sorted(consul_servers):
        got = _get(nodes[n].consul, "bootstrap_expect")
        if got != len(consul_servers):
            wrong_expect.append(f"{n} consul {got}")
    for n in sorted(nomad_servers):
        got = _get(nodes[n].nomad, "server", "bootstrap_expect")
        if got != len(nomad_servers):
            wrong_expect.append(f"{n} nomad {got}")
    checks.append(
        Check("bootstrap_expect equals the number of servers", not wrong_expect,
              f"expected {len(consul_servers)}: " + ", ".join(wrong_expect) if wrong_expect
              else f"{len(consul_servers)} on every server")
    )

    checks.append(_unique("unique Consul node names", {n: _get(c.consul, "node_name") for n, c in nodes.items()},
                          "node_name"))
    checks.append(_unique("unique Nomad node names", {n: _get(c.nomad, "name") for n, c in nodes.items()}, "name"))
    addresses = {n: _get(c.consul, "advertise_addr") for n, c in nodes.items()}
    checks.append(_unique("unique addresses", addresses, "address"))

    mismatched = []
    for n, c in sorted(nodes.items()):
        mine = {
            _get(c.consul, "bind_addr"),
            _get(c.consul, "advertise_addr"),
            _get(c.nomad, "bind_addr"),
            *(_get(c.nomad, "advertise", k) for k in ("http", "rpc", "serf")),
        }
        if len(mine) != 1 or None in mine:
            mismatched.append(n)
    checks.append(
        Check("each node binds and advertises one address", not mismatched,
              f"differ on {', '.join(mismatched)}" if mismatched else "")
    )

    consul_server_addrs = {str(_get(c.consul, "advertise_addr")) for c in consul_servers.values()}
    checks.append(_joins(
        "Consul retry_join reaches every server",
        {n: _as_list(_get(c.consul, "retry_join")) for n, c in nodes.items()},
        consul_server_addrs,
    ))
    nomad_server_addrs = {str(_get(c.nomad, "advertise", "rpc")) for c in nomad_servers.values()}
    nomad_joins: dict[str, list[Any]] = {}
    for n, c in nodes.items():
        if is_nomad_server(c):
            nomad_joins[n] = _as_list(_get(c.nomad, "server", "server_join", "retry_join"))
        else:
            nomad_joins[n] = _as_list(_get(c.nomad, "client", "server_join", "retry_join")) + _as_list(
                _get(c.nomad, "client", "servers")
            )
    checks.append(_joins("Nomad server_join reaches every server", nomad_joins, nomad_server_addrs))
    return checks


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
