"""status and destroy through the lifecycle, OCI provider against the emulator: only our tagged nodes, asked first."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import lifecycle, nodeconfig, ociclient, outputs, proc
from nomadic.errors import ConfigError
from nomadic.plan import make_plan
from nomadic.providers.oci import TAG_CLUSTER, TAG_NODE, OciProvider, placement, retry_token
from tests.ociemu import Emulator
from tests.ociemu.server import ADS, IMAGE
from tests.ociemu.testing import Capture, settings_for


@pytest.fixture
def emu():
    with Emulator() as e:
        e.micro_limit = 10
        yield e


def console() -> tuple[lifecycle.Console, Capture]:
    cap = Capture()
    return lifecycle.Console(cap.buffer), cap


def launched(emu: Emulator, tmp_path: Path, count: int = 2, **cluster):
    settings = settings_for(emu, tmp_path, cluster={"count": count, **cluster}, oci={"allow_paid": True})
    con, _ = console()
    lifecycle.launch(settings, None, False, provider=OciProvider(settings), console=con)
    return settings


def test_destroy_terminates_only_our_cluster(emu: Emulator, tmp_path: Path) -> None:
    foreign = emu.add_instance("web", "10.0.0.100")
    other = emu.add_instance("nomadic-01", "10.0.0.101", tags={TAG_CLUSTER: "other", TAG_NODE: "nomadic-01"})
    settings = launched(emu, tmp_path)
    ours = [i["id"] for i in emu.live("nomadic")]
    con, cap = console()
    gone = lifecycle.destroy(settings, yes=True, provider=OciProvider(settings), console=con)
    assert sorted(n.id for n in gone) == sorted(ours)
    assert all(emu.state(i) == "TERMINATED" for i in ours)
    assert emu.state(foreign) == "RUNNING" and emu.state(other) == "RUNNING"
    assert emu.calls["terminate_instance"] == 2
    # boot volumes were not preserved
    boot = {i.data["id"]: i.preserve_boot for i in emu.instances.values()}
    assert [boot[i] for i in ours] == [False, False]
    assert not (settings.cluster_dir / outputs.INVENTORY).exists()
    assert "2 instances terminated" in cap.text


def test_destroy_without_tty_and_yes_refuses(emu: Emulator, tmp_path: Path) -> None:
    settings = launched(emu, tmp_path, count=1)
    con, _ = console()
    with pytest.raises(ConfigError, match="no terminal to confirm on .*pass --yes"):
        lifecycle.destroy(settings, yes=False, provider=OciProvider(settings), console=con, interactive=lambda: False)
    assert emu.calls["terminate_instance"] == 0


def test_destroy_asks_and_respects_no(emu: Emulator, tmp_path: Path) -> None:
    settings = launched(emu, tmp_path, count=1)
    asked: list[str] = []
    con, cap = console()
    lifecycle.destroy(
        settings, yes=False, provider=OciProvider(settings), console=con,
        ask=lambda q: asked.append(q) or "n", interactive=lambda: True,
    )
    assert asked and "terminate these 1 instances of cluster nomadic?" in asked[0]
    assert emu.calls["terminate_instance"] == 0 and "nothing done" in cap.text
    lifecycle.destroy(settings, yes=False, provider=OciProvider(settings), console=con, ask=lambda q: "yes", interactive=lambda: True)
    assert emu.calls["terminate_instance"] == 1


def test_destroy_with_nothing_there(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    con, cap = console()
    assert lifecycle.destroy(settings, yes=True, provider=OciProvider(settings), console=con) == []
    assert "nothing to destroy" in cap.text


def test_destroy_waits_through_terminating(tmp_path: Path) -> None:
    with Emulator(terminating_delay=1.5) as emu:
        settings = launched(emu, tmp_path, count=1)
        con, _ = console()
        lifecycle.destroy(settings, yes=True, provider=OciProvider(settings), console=con)
        assert [emu.state(i) for i in emu.instances] == ["TERMINATED"]


def test_status_lists_nodes_and_reports_unreachable_health(emu: Emulator, tmp_path: Path) -> None:
    settings = launched(emu, tmp_path, count=2)
    emu.add_instance("web", "10.0.0.100")
    seen: list[list[str]] = []

    def unreachable(argv):
        seen.append(list(argv))
        return proc.Result(tuple(argv), 255, "", "ssh: connect to host 127.0.1.1 port 22: Connection refused\n")

    con, cap = console()
    nodes = lifecycle.status(settings, provider=OciProvider(settings), console=con, health_run=unreachable)
    assert [n.name for n in nodes] == ["nomadic-01", "nomadic-02"]
    assert "cluster nomadic: 2 nodes, 2 running" in cap.text
    assert "10.0.0.2" in cap.text and "both" in cap.text and "RUNNING" in cap.text and "web" not in cap.text
    assert "health: no server reachable over SSH" in cap.text and "Connection refused" in cap.text
    assert all(argv[0] == "ssh" and argv[-2:] == ["consul", "members"] for argv in seen)


def test_status_with_no_nodes(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    con, cap = console()
    assert lifecycle.status(settings, provider=OciProvider(settings), console=con) == []
    assert "no nodes found" in cap.text


def test_launch_killed_between_requests_then_rerun_converges(emu: Emulator, tmp_path: Path) -> None:
    """What a killed run leaves: two nodes created (still PROVISIONING), one never sent; no local record."""
    emu.provisioning_delay = 3600
    settings = settings_for(emu, tmp_path, cluster={"count": 3}, oci={"allow_paid": True})
    provider = OciProvider(settings)
    ctx = provider.preflight(None)
    launcher = ociclient.compute(provider.session, retry=False)
    nonce = placement.launch_nonce(settings)  # what the killed run had recorded before its first create
    for node in make_plan(settings.cluster).nodes[:2]:  # the requests the killed run had sent
        metadata = nodeconfig.oci_metadata("#cloud-config\n", ctx.ssh_key)
        details = placement.details(settings, ctx, node, metadata, ADS[0], None, [])
        launcher.launch_instance(details, opc_retry_token=retry_token("nomadic", node.name, 0, nonce))
    emu.provisioning_delay = 0
    con, cap = console()
    nodes = lifecycle.launch(settings, None, False, provider=OciProvider(settings), console=con)
    names = sorted(i["freeformTags"]["nomadic-node"] for i in emu.live("nomadic"))
    assert names == ["nomadic-01", "nomadic-02", "nomadic-03"]
    assert [n.private_ip for n in nodes] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert "2 of 3 nodes exist; launching nomadic-03" in cap.text


def healthy_two(argv):
    from tests.test_health import HEALTHY

    # The real agents' recorded output (nodes vmx-01..03), as this test's two nodes nomadic-01 and -02 see it.
    outputs = {
        key: "\n".join(line.replace("vmx-0", "nomadic-0") for line in text.splitlines() if "vmx-03" not in line)
        for key, text in HEALTHY.items()
    }
    from nomadic import health

    key = next(k for k, cmd in health.CHECKS.items() if list(argv[-len(cmd):]) == list(cmd))
    return proc.Result(tuple(argv), 0, outputs[key], "")


def test_launch_wait_cluster_until_healthy(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    con, cap = console()
    lifecycle.launch(settings, None, True, provider=OciProvider(settings), console=con, health_run=healthy_two)
    assert "cluster healthy: Consul and Nomad have a leader and all 2 nodes are members" in cap.text


def test_launch_wait_cluster_times_out_clearly(emu: Emulator, tmp_path: Path) -> None:
    from nomadic.errors import CloudError

    settings = settings_for(emu, tmp_path, cluster={"count": 2, "wait_timeout_s": 0})

    def refused(argv):
        return proc.Result(tuple(argv), 255, "", "ssh: connect to host 127.0.1.1 port 22: Connection refused\n")

    con, _ = console()
    with pytest.raises(CloudError, match=r"cluster not healthy after 0s: no server reachable over SSH"):
        lifecycle.launch(settings, None, True, provider=OciProvider(settings), console=con, health_run=refused)
    assert (settings.cluster_dir / outputs.INVENTORY).exists()  # the nodes exist and the outputs say where


def test_status_shows_health_per_node(emu: Emulator, tmp_path: Path) -> None:
    settings = launched(emu, tmp_path, count=2)
    con, cap = console()
    lifecycle.status(settings, provider=OciProvider(settings), console=con, health_run=healthy_two)
    header, *rows = [ln for ln in cap.text.splitlines() if ln.startswith(("NAME", "nomadic-0"))]
    assert header.split()[3] == "HEALTH" and all(r.split()[3] == "ok" for r in rows) and len(rows) == 2
    assert "health: ok" in cap.text
