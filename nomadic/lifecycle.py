"""Launch, status and destroy for any provider: find what exists, plan the rest, launch it, report, wait."""

from __future__ import annotations

import sys
import threading
from typing import IO, Callable, Sequence

from . import health, outputs
from .config import Settings
from .errors import ConfigError, NomadicError
from .plan import Plan, make_plan, server_count
from .providers import get as get_provider
from .providers.base import COMING_STATES, GONE_STATES, STOPPED_STATES, NodeStatus, Provider


class Console:
    """Progress lines, one per event, safe to call from the launch threads."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def node(self, name: str, message: str) -> None:
        self.say(f"  {name:<20} {message}")


def _alive(nodes: Sequence[NodeStatus]) -> list[NodeStatus]:
    return [n for n in nodes if n.state not in GONE_STATES]


def _first_per_name(nodes: Sequence[NodeStatus]) -> dict[str, NodeStatus]:
    kept: dict[str, NodeStatus] = {}
    for n in nodes:
        kept.setdefault(n.name, n)  # find() sorts by name, then creation time: the oldest wins
    return kept


def plan_launch(settings: Settings, provider: Provider) -> tuple[Plan, dict[str, NodeStatus], list[NodeStatus]]:
    """The plan with existing nodes kept: (plan, existing by name, every live node found)."""
    found = _alive(provider.find())
    existing = _first_per_name(found)
    used = provider.used_addresses()
    plan = make_plan(settings.cluster, used, {name: n.private_ip for name, n in existing.items() if n.private_ip})
    return plan, existing, found


def _write_what_exists(settings: Settings, provider: Provider, con: Console) -> None:
    """After a failed launch, still leave outputs for the nodes that do exist (best effort)."""
    try:
        nodes = _alive(provider.find())
    except NomadicError:
        return
    if nodes:
        paths = outputs.write(settings, nodes)
        con.say(f"wrote {', '.join(str(p) for p in paths)} for the {len(nodes)} nodes that exist")


def launch(
    settings: Settings,
    image: str | None,
    wait_cluster: bool,
    provider: Provider | None = None,
    console: Console | None = None,
    health_run: health.Runner | None = None,
) -> list[NodeStatus]:
    """Bring the cluster to cluster.count nodes (launching only the missing ones); write outputs; maybe wait."""
    con = console or Console()
    server_count(settings.cluster.count, settings.cluster.servers)  # count < 1 fails before any API call
    prov = provider or get_provider(settings)
    image = prov.preflight(image)
    plan, existing, found = plan_launch(settings, prov)
    notes_seen = 0

    def say_notes() -> None:  # remarks the provider collected (e.g. about the subnet or the free-tier count)
        nonlocal notes_seen
        notes = getattr(prov, "notes", [])
        for note in notes[notes_seen:]:
            con.say(f"note: {note}")
        notes_seen = len(notes)

    def provider_step(action: Callable[[], list[NodeStatus]]) -> list[NodeStatus]:
        """Start or launch; when it fails, still leave outputs for the nodes that exist."""
        try:
            result = action()
        except NomadicError:
            say_notes()
            _write_what_exists(settings, prov, con)
            raise
        say_notes()
        return result

    say_notes()
    for warning in plan.warnings:
        con.say(f"warning: {warning}")
    planned = {n.name for n in plan.nodes}
    for n in found:
        if n.name in existing and existing[n.name] is not n:
            con.say(f"warning: {n.name} exists twice ({existing[n.name].id} and {n.id}); 'invoke destroy' removes both")
        elif n.name not in planned:
            con.say(f"note: {n.name} exists beyond --count {settings.cluster.count}; it is kept")
    stopped: list[NodeStatus] = []
    for node in plan.nodes:
        have = existing.get(node.name)
        if have and have.role is not node.role:
            con.say(f"warning: {node.name} runs as {have.role.value}, the plan says {node.role.value}; it is kept as it is")
        if have and have.state.upper() in STOPPED_STATES | COMING_STATES:
            stopped.append(have)
        elif have and have.state.upper() != "RUNNING":
            con.say(f"note: {node.name} exists but is {have.state}")
    def open_network() -> list[NodeStatus]:
        prov.ensure_network(image, con.node)
        return []

    provider_step(open_network)
    started: list[NodeStatus] = []
    if stopped:
        for n in stopped:
            con.say(f"waiting for {n.name} ({n.state})" if n.state.upper() in COMING_STATES else f"starting {n.name} (was {n.state})")
        started = provider_step(lambda: prov.start(stopped, con.node))
    missing = [n for n in plan.nodes if n.name not in existing]
    launched: list[NodeStatus] = []
    if missing:
        from . import nodeconfig

        files = nodeconfig.render_nodes(settings, plan)
        user_data = {n.name: files[n.name].user_data for n in missing}
        con.say(
            f"cluster {plan.cluster}: {len(existing)} of {len(plan.nodes)} nodes exist; "
            f"launching {', '.join(n.name for n in missing)}"
        )
        launched = provider_step(lambda: prov.launch(plan, missing, user_data, image, con.node))
    else:
        con.say(f"cluster {plan.cluster}: all {len(plan.nodes)} nodes exist; nothing to launch")
    # A started node replaces its stopped status (a local VM's id, its pid, changes on a restart).
    by_name = {n.id: n for n in found if not any(n is s for s in stopped)}
    by_name.update({n.id: n for n in started + launched})
    nodes = sorted(by_name.values(), key=lambda n: n.name)
    paths = outputs.write(settings, nodes)
    con.say("")
    con.say(outputs.table(nodes))
    con.say("")
    con.say(f"wrote {', '.join(str(p) for p in paths)}")
    con.say(
        f"UIs: ssh -F {settings.cluster_dir / outputs.SSH_CONFIG} -N {outputs.tunnel_alias(settings)}, "
        f"then http://localhost:{outputs.NOMAD_UI_PORT} (Nomad) and http://localhost:{outputs.CONSUL_UI_PORT} (Consul)"
    )
    if wait_cluster:
        health.wait(settings, nodes, con.say, run=health_run or health.run_ssh)
    return nodes


def status(
    settings: Settings,
    provider: Provider | None = None,
    console: Console | None = None,
    health_run: health.Runner | None = None,
) -> list[NodeStatus]:
    con = console or Console()
    prov = provider or get_provider(settings)
    nodes = prov.find()
    if not nodes:
        con.say(f"cluster {settings.cluster.name}: no nodes found")
        return nodes
    running = [n for n in nodes if n.state.upper() == "RUNNING"]
    con.say(f"cluster {settings.cluster.name}: {len(nodes)} nodes, {len(running)} running")
    if not running:
        con.say(outputs.table(nodes))
        return nodes
    if not any(n.role.is_server for n in running):
        halted = ", ".join(f"{n.name} is {n.state}" for n in nodes if n.role.is_server) or "the cluster has none"
        con.say(outputs.table(nodes))
        con.say(f"health: no server node is running ({halted}); 'invoke launch' starts stopped nodes")
        return nodes
    report = health.inspect(settings, running, run=health_run or health.run_ssh)
    con.say(outputs.table(nodes, health=report.nodes or None))
    if report.problems:
        con.say("health: " + "; ".join(report.problems))
    else:
        con.say("health: ok (Consul and Nomad have a leader; every node is a member)")
    return nodes


def destroy(
    settings: Settings,
    yes: bool,
    provider: Provider | None = None,
    console: Console | None = None,
    ask: Callable[[str], str] = input,
    interactive: Callable[[], bool] = lambda: sys.stdin.isatty(),
) -> list[NodeStatus]:
    """Terminate exactly the nodes found for this cluster, after asking (unless yes)."""
    con = console or Console()
    prov = provider or get_provider(settings)
    nodes = [n for n in prov.find() if n.state.upper() != "TERMINATED"]
    if not nodes:
        con.say(f"cluster {settings.cluster.name}: no nodes found; nothing to destroy")
        outputs.remove(settings)
        return []
    con.say(outputs.table(nodes))
    if not yes:
        if not interactive():
            raise ConfigError(
                f"destroy would terminate {len(nodes)} instances of cluster {settings.cluster.name} "
                "and there is no terminal to confirm on",
                hint="pass --yes",
            )
        answer = ask(f"terminate these {len(nodes)} instances of cluster {settings.cluster.name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            con.say("nothing done")
            return []
    prov.destroy(nodes, con.node)
    for path in outputs.remove(settings):
        con.say(f"removed {path}")
    con.say(f"cluster {settings.cluster.name}: {len(nodes)} instances terminated")
    return nodes
