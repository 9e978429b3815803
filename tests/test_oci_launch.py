"""OCI launch against the local emulator through the real oci SDK: happy path, failures, idempotency, free tier."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from nomadic import lifecycle, nodeconfig, outputs
from nomadic.errors import CapacityError, CloudError, LimitExceeded
from nomadic.plan import make_plan
from nomadic.providers.oci import TAG_CLUSTER, TAG_NODE, TAG_ROLE, OciProvider, retry_token
from tests.ociemu import Emulator, Fault
from tests.ociemu.server import ADS, COMPARTMENT, IMAGE, MICRO, SUBNET
from tests.ociemu.testing import SSH_PUBLIC_KEY, Capture, settings_for


class Sleeps:
    """The provider's injectable sleep: records backoffs instead of waiting them out."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def run_launch(settings, sleeps=None, image=None):
    cap = Capture()
    provider = OciProvider(settings, sleep=sleeps or Sleeps(), rand=lambda: 0.5)
    nodes = lifecycle.launch(settings, image, False, provider=provider, console=lifecycle.Console(cap.buffer))
    return nodes, cap.text


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


def test_two_nodes_happy_path(emu: Emulator, tmp_path: Path) -> None:
    emu.reserved_ips = ["10.0.0.2"]  # something else already holds the first usable address
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    nodes, text = run_launch(settings)

    plan = make_plan(settings.cluster, used={"10.0.0.2"})
    rendered = nodeconfig.render_nodes(settings, plan)
    assert [n.name for n in nodes] == ["nomadic-01", "nomadic-02"]
    assert len(emu.launch_bodies) == 2
    by_name = {b["displayName"]: b for b in emu.launch_bodies}
    for node in plan.nodes:
        body = by_name[node.name]
        assert base64.b64decode(body["metadata"]["user_data"]).decode() == rendered[node.name].user_data
        assert body["metadata"]["ssh_authorized_keys"] == SSH_PUBLIC_KEY
        vnic = body["createVnicDetails"]
        assert vnic["privateIp"] == node.address
        assert vnic["hostnameLabel"] == node.name
        assert vnic["subnetId"] == SUBNET
        assert body["freeformTags"][TAG_CLUSTER] == "nomadic"
        assert body["freeformTags"][TAG_NODE] == node.name
        assert body["freeformTags"][TAG_ROLE] == node.role.value
        assert body["shape"] == MICRO
        assert body["sourceDetails"]["imageId"] == IMAGE
        assert body["sourceDetails"]["bootVolumeSizeInGBs"] == 50
    assert [n.private_ip for n in nodes] == ["10.0.0.3", "10.0.0.4"]
    assert all(n.state == "RUNNING" and n.public_ip.startswith("127.") for n in nodes)
    nonce = (settings.cluster_dir / "oci-launch-nonce").read_text().strip()
    assert len(nonce) == 32 and len(set(emu.launch_tokens)) == 2
    assert sorted(emu.launch_tokens) == sorted(retry_token("nomadic", n.name, 0, nonce) for n in plan.nodes)
    inventory = (settings.cluster_dir / outputs.INVENTORY).read_text()
    assert "[servers]\nnomadic-01 ansible_host=127.0.1." in inventory
    assert "LocalForward 4646 127.0.0.1:4646" in (settings.cluster_dir / outputs.SSH_CONFIG).read_text()
    assert "nomadic-01" in text and "RUNNING" in text


def test_rerun_launches_only_missing_and_keeps_addresses(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    first, _ = run_launch(settings)
    again, text = run_launch(settings)
    assert len(emu.live("nomadic")) == 2 and emu.launch_calls() == 2
    assert "nothing to launch" in text
    assert {n.id for n in again} == {n.id for n in first}

    emu.micro_limit = 10  # a paid tenancy
    bigger = settings_for(emu, tmp_path, cluster={"count": 3}, oci={"allow_paid": True})
    grown, text = run_launch(bigger)
    assert emu.launch_calls() == 3
    assert [n.name for n in grown] == ["nomadic-01", "nomadic-02", "nomadic-03"]
    assert {n.private_ip for n in grown[:2]} == {n.private_ip for n in first}
    assert grown[2].private_ip == "10.0.0.4"
    third = emu.launch_bodies[-1]
    user_data = base64.b64decode(third["metadata"]["user_data"]).decode()
    assert "10.0.0.2" in user_data and "10.0.0.3" in user_data  # joins the servers that already run


def test_capacity_errors_on_two_of_three_ads(emu: Emulator, tmp_path: Path) -> None:
    emu.capacity_ads = {ADS[0], ADS[1]}
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    sleeps = Sleeps()
    nodes, text = run_launch(settings, sleeps)
    assert all(n.state == "RUNNING" for n in nodes)
    assert {b["availabilityDomain"] for b in emu.launch_bodies} == {ADS[2]}
    assert emu.launch_calls() == 6  # each node: AD-1, AD-2 refused, AD-3 taken
    assert sleeps.calls == []  # moving to the next AD needs no backoff
    assert "out of host capacity in Uocm:US-ASHBURN-AD-1" in text
    assert len(set(emu.launch_tokens)) == 2


def test_capacity_everywhere_gives_up_after_rounds(emu: Emulator, tmp_path: Path) -> None:
    emu.capacity_ads = set(ADS)
    settings = settings_for(emu, tmp_path, cluster={"count": 1}, oci={"capacity_rounds": 3})
    sleeps = Sleeps()
    with pytest.raises(CapacityError, match="out of host capacity .* after 3 rounds"):
        run_launch(settings, sleeps)
    assert emu.launch_calls() == 9 and emu.live() == []
    assert len(sleeps.calls) == 2 and sleeps.calls[1] > sleeps.calls[0]


def test_capacity_returns_after_a_backoff_round(emu: Emulator, tmp_path: Path) -> None:
    emu.inject(Fault("launch_instance", "launch_instance", 500, "InternalError", "Out of host capacity.", times=3))
    settings = settings_for(emu, tmp_path, cluster={"count": 1})
    sleeps = Sleeps()
    nodes, _ = run_launch(settings, sleeps)
    assert len(nodes) == 1 and len(sleeps.calls) == 1 and emu.launch_calls() == 4


def test_fault_domains_are_tried_within_an_ad(emu: Emulator, tmp_path: Path) -> None:
    emu.inject(
        Fault("launch_instance", "launch_instance", 500, "InternalError", "Out of host capacity.", times=1,
              when=lambda body: body.get("faultDomain") == "FAULT-DOMAIN-1")
    )
    settings = settings_for(
        emu, tmp_path, cluster={"count": 1},
        oci={"availability_domains": ADS[0], "fault_domains": "FAULT-DOMAIN-1,FAULT-DOMAIN-2"},
    )
    run_launch(settings)
    assert [(b["availabilityDomain"], b["faultDomain"]) for b in emu.launch_bodies] == [(ADS[0], "FAULT-DOMAIN-2")]


def test_429_burst_backs_off_and_creates_no_twin(emu: Emulator, tmp_path: Path) -> None:
    emu.throttle_launches = 4
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    sleeps = Sleeps()
    nodes, text = run_launch(settings, sleeps)
    assert len(nodes) == 2 and len(emu.live("nomadic")) == 2
    assert emu.launch_calls() == 6 and len(sleeps.calls) == 4
    assert "throttled (429)" in text
    # exponential with jitter: rand 0.5 gives 3/4 of base * 2**n, capped by backoff_max_s
    assert all(0.0075 - 1e-9 <= s <= 0.05 for s in sleeps.calls)


def test_429_forever_stops_with_a_clear_error(emu: Emulator, tmp_path: Path) -> None:
    emu.throttle_launches = 100
    settings = settings_for(emu, tmp_path, cluster={"count": 1})
    with pytest.raises(CloudError, match=r"still throttled \(429\)"):
        run_launch(settings)
    assert emu.live() == []


def test_free_tier_guard_counts_running_micros(emu: Emulator, tmp_path: Path) -> None:
    emu.add_instance("someone-else", "10.0.0.200")  # any E2.1.Micro in the tenancy counts
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    with pytest.raises(LimitExceeded, match="Always Free allows 2 VM.Standard.E2.1.Micro .* 1 exist .* adds 2"):
        run_launch(settings)
    assert emu.launch_calls() == 0


def test_free_tier_guard_counts_boot_volume_storage(emu: Emulator, tmp_path: Path) -> None:
    emu.volumes_gb = [150]
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    with pytest.raises(LimitExceeded, match="200 GB .* 150 GB exist .* adds 100 GB"):
        run_launch(settings)
    assert emu.launch_calls() == 0


def test_free_tier_guard_refuses_paid_shapes(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, cluster={"count": 1}, oci={"shape": "VM.Standard.E4.Flex"})
    with pytest.raises(LimitExceeded, match="not in the Always Free tier"):
        run_launch(settings)
    assert emu.launch_calls() == 0


def test_service_limit_exceeded_names_the_limit_and_stops(emu: Emulator, tmp_path: Path) -> None:
    emu.add_instance("someone-else", "10.0.0.200")
    settings = settings_for(emu, tmp_path, cluster={"count": 3}, oci={"allow_paid": True})
    cap = Capture()
    provider = OciProvider(settings, sleep=Sleeps())
    with pytest.raises(LimitExceeded) as info:
        lifecycle.launch(settings, None, False, provider=provider, console=lifecycle.Console(cap.buffer))
    message = str(info.value)
    assert "standard-e2-micro-core-count" in message and "service limit" in message
    assert "Always Free allows" not in message  # the tenancy's own limit may be lower than the free tier's
    assert "1 of 3 new nodes running" in message and "rerun 'invoke launch'" not in message  # a rerun meets it again
    assert len(emu.live("nomadic")) == 1
    assert "not created" in cap.text and "exists: RUNNING" in cap.text
    inventory = (settings.cluster_dir / "inventory.ini").read_text()  # outputs name what does exist
    assert inventory.count("ansible_host=") == 2  # the one node, in servers and clients


def test_other_error_stops_launching_and_reports_per_node(emu: Emulator, tmp_path: Path) -> None:
    emu.provisioning_delay = 0.0
    emu.inject(Fault("launch_instance", "launch_instance", 400, "InvalidParameter", "boot volume too small", skip=1))
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    cap = Capture()
    with pytest.raises(CloudError, match="nomadic-0[12]: launch: 400 InvalidParameter: boot volume too small"):
        lifecycle.launch(settings, None, False, provider=OciProvider(settings, sleep=Sleeps()), console=lifecycle.Console(cap.buffer))
    assert len(emu.live("nomadic")) == 1
    # the rerun converges: only the missing node is launched
    nodes, _ = run_launch(settings)
    assert len(nodes) == 2 and len(emu.live("nomadic")) == 2 and emu.launch_calls() == 3


def test_relaunch_after_destroy_is_not_fooled_by_replayed_tokens(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, cluster={"count": 1})
    first, _ = run_launch(settings)
    lifecycle.destroy(settings, yes=True, provider=OciProvider(settings), console=lifecycle.Console(Capture().buffer))
    second, _ = run_launch(settings)
    assert second[0].id != first[0].id and second[0].state == "RUNNING"
    assert len(set(emu.launch_tokens)) == 2  # destroy renewed the launch nonce: the relaunch sends a fresh token


def test_progress_line_per_node_while_provisioning(tmp_path: Path) -> None:
    with Emulator(provisioning_delay=0.3) as emu:
        settings = settings_for(emu, tmp_path, cluster={"count": 2})
        _, text = run_launch(settings)
    for name in ("nomadic-01", "nomadic-02"):
        assert f"{name}" in text
        lines = [ln for ln in text.splitlines() if ln.strip().startswith(name)]
        assert any("PROVISIONING" in ln for ln in lines) and any(ln.rstrip().endswith("RUNNING") for ln in lines)


def test_a_transient_500_is_resent_with_the_same_token(emu: Emulator, tmp_path: Path) -> None:
    # A 500 that is not about capacity is transient: resent (same opc-retry-token), never placed elsewhere.
    emu.inject(Fault("launch_instance", "launch_instance", 500, "InternalError", "Internal error"))
    settings = settings_for(emu, tmp_path, cluster={"count": 1})
    sleeps = Sleeps()
    nodes, text = run_launch(settings, sleeps)
    assert emu.launch_calls() == 2 and len(emu.live("nomadic")) == 1 and len(sleeps.calls) == 1
    assert "OCI error (500); retrying" in text and "out of host capacity" not in text


def test_compartment_is_searched_for_our_tag_only(emu: Emulator, tmp_path: Path) -> None:
    emu.add_instance("nomadic-01", "10.0.0.2", tags={TAG_CLUSTER: "other", TAG_NODE: "nomadic-01"})
    emu.add_instance("stray", "10.0.0.3", compartment=COMPARTMENT)
    emu.micro_limit = 10
    settings = settings_for(emu, tmp_path, cluster={"count": 1}, oci={"allow_paid": True})
    nodes, _ = run_launch(settings)
    assert len(nodes) == 1 and nodes[0].private_ip == "10.0.0.4"  # foreign addresses avoided


# -- stopped nodes: a rerun starts them -----------------------------------------------------------------------


def launched_then_stopped(emu: Emulator, tmp_path: Path):
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    first, _ = run_launch(settings)
    stopped = next(n for n in first if n.name == "nomadic-02")
    emu.stop_instance(stopped.id)
    return settings, first, stopped


def test_rerun_starts_a_stopped_node(emu: Emulator, tmp_path: Path) -> None:
    settings, first, stopped = launched_then_stopped(emu, tmp_path)
    assert emu.state(stopped.id) == "STOPPED"
    emu.starting_delay = 1.0  # the START goes through STARTING before RUNNING
    nodes, text = run_launch(settings)
    assert emu.actions == [(stopped.id, "START")]
    assert emu.launch_calls() == 2  # nothing new launched
    assert [(n.name, n.state) for n in nodes] == [("nomadic-01", "RUNNING"), ("nomadic-02", "RUNNING")]
    assert {n.id for n in nodes} == {n.id for n in first}
    again = next(n for n in nodes if n.name == "nomadic-02")
    assert (again.private_ip, again.public_ip) == (stopped.private_ip, stopped.public_ip)
    assert "starting nomadic-02 (was STOPPED)" in text
    assert "STARTING" in text and "exists but is STOPPED" not in text
    assert f"nomadic-02 ansible_host={stopped.public_ip}" in (settings.cluster_dir / outputs.INVENTORY).read_text()


def test_a_foreign_stopped_instance_is_never_started(emu: Emulator, tmp_path: Path) -> None:
    foreign = emu.add_instance("nomadic-01", "10.0.0.9", tags={TAG_CLUSTER: "other", TAG_NODE: "nomadic-01"})
    emu.stop_instance(foreign)
    settings = settings_for(emu, tmp_path, cluster={"count": 1})
    nodes, _ = run_launch(settings)
    assert [n.id for n in nodes] != [foreign] and emu.launch_calls() == 1
    assert emu.actions == [] and emu.state(foreign) == "STOPPED"
    # Even when handed one directly (a stale find), start re-checks the tag before acting.
    provider = OciProvider(settings, sleep=Sleeps())
    stale = nodes[0].__class__(**{**nodes[0].__dict__, "id": foreign, "state": "STOPPED"})
    with pytest.raises(CloudError, match="not tagged nomadic-cluster=nomadic; left alone"):
        provider.start([stale], lambda *_: None)
    assert emu.actions == [] and emu.state(foreign) == "STOPPED"


def test_start_retries_429_then_starts(emu: Emulator, tmp_path: Path) -> None:
    settings, _, stopped = launched_then_stopped(emu, tmp_path)
    emu.inject(Fault("POST", "instance_action", 429, "TooManyRequests", "Too many requests", times=2))
    sleeps = Sleeps()
    nodes, text = run_launch(settings, sleeps)
    assert len(sleeps.calls) == 2 and "throttled (429)" in text
    assert emu.actions == [(stopped.id, "START")]
    assert all(n.state == "RUNNING" for n in nodes)


def test_start_refused_propagates_and_outputs_stay(emu: Emulator, tmp_path: Path) -> None:
    settings, _, stopped = launched_then_stopped(emu, tmp_path)
    (settings.cluster_dir / outputs.INVENTORY).unlink()
    emu.inject(Fault("POST", "instance_action", 500, "InternalError", "Out of host capacity.", times=1))
    with pytest.raises(CloudError, match=r"nomadic-02: start .*500 InternalError.*0 of 1 nodes started"):
        run_launch(settings)
    assert emu.state(stopped.id) == "STOPPED" and emu.launch_calls() == 2
    assert "nomadic-01 ansible_host=" in (settings.cluster_dir / outputs.INVENTORY).read_text()


def test_a_starting_node_is_waited_for(emu: Emulator, tmp_path: Path) -> None:
    settings, _, stopped = launched_then_stopped(emu, tmp_path)
    emu.starting_delay = 1.5
    emu._instance_action(id=stopped.id, query={"action": "START"})  # someone else started it: still STARTING
    nodes, text = run_launch(settings)
    assert "waiting for nomadic-02 (STARTING)" in text
    assert emu.actions == [(stopped.id, "START")]  # only that one; launch sent none
    assert {n.name: n.state for n in nodes} == {"nomadic-01": "RUNNING", "nomadic-02": "RUNNING"}
