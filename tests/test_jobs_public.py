"""Public ports on OCI: the real oci SDK against the OCI emulator (tests/ociemu), the public NSG's rules judged by
the OCI-semantics evaluator of tests/test_oci_network.py (`reaches`), which shares no code with nomadic.

Nomad is not involved here (deploy opens the ports only once a job is healthy; tests/test_jobs_nomad.py covers
that path up to the wait): these tests drive the publisher deploy and stop call, and deploy's confirmation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import lifecycle
from nomadic.errors import ConfigError
from nomadic.jobs import deploy, spec
from nomadic.providers.oci import OciProvider
from tests.ociemu import Emulator
from tests.ociemu.testing import Capture, settings_for
from tests.test_oci_network import OUTSIDE, PRIVATE_PORTS, TCP, UDP, live_nsgs, reaches, vnics


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


def launched(emu: Emulator, tmp_path: Path):
    settings = settings_for(emu, tmp_path, cluster={"count": 2})
    cap = Capture()
    lifecycle.launch(settings, None, False, provider=OciProvider(settings, sleep=lambda s: None),
                     console=lifecycle.Console(cap.buffer))  # fmt: skip
    return settings


def public_group(emu: Emulator) -> dict:
    (group,) = [g for n, g in emu.nsgs.items() if n in live_nsgs(emu) and g["data"]["displayName"].endswith("-public")]
    return group


def open_from_outside(emu: Emulator) -> set[tuple[str, int]]:
    probes = [(UDP, 53), (TCP, 53), (TCP, 80), (TCP, 5678), *PRIVATE_PORTS]
    return {(p, n) for p, n in probes if all(reaches(emu, OUTSIDE, [], v, p, n) for v in vnics(emu))}


def test_deploy_opens_exactly_the_jobs_ports_and_stop_removes_them(emu: Emulator, tmp_path: Path):
    settings = launched(emu, tmp_path)
    assert open_from_outside(emu) == set()  # before: SSH only (not probed), nothing a job publishes
    publisher = deploy.OciPublisher(settings)
    said: list[str] = []
    publisher.publish("knotdns", deploy._ports(settings, spec.Job.KNOTDNS), "0.0.0.0/0", said.append)
    assert open_from_outside(emu) == {(UDP, 53), (TCP, 53)}
    assert len(live_nsgs(emu)) == 2  # the cluster group and the separate public one
    group = public_group(emu)
    assert group["data"]["freeformTags"] == {"nomadic-cluster": "nomadic", "nomadic-nsg": "public"}
    assert all(sorted(v["nsgIds"]) == sorted(live_nsgs(emu)) for v in vnics(emu))
    assert said[-1] == "knotdns: udp 53, tcp 53 open to 0.0.0.0/0 in network security group nomadic-public"

    publisher.publish("lb", deploy._ports(settings, spec.Job.LB), "0.0.0.0/0", said.append)
    publisher.publish("lb", deploy._ports(settings, spec.Job.LB), "0.0.0.0/0", said.append)  # again: no twin rule
    assert open_from_outside(emu) == {(UDP, 53), (TCP, 53), (TCP, 80)}
    assert len(public_group(emu)["rules"]) == 3

    publisher.unpublish("knotdns", said.append)
    assert open_from_outside(emu) == {(TCP, 80)}
    assert said[-1] == "knotdns: its ports removed from network security group nomadic-public"
    publisher.unpublish("lb", said.append)
    assert open_from_outside(emu) == set() and public_group(emu)["rules"] == {}


def test_a_narrower_cidr_is_all_that_gets_in(emu: Emulator, tmp_path: Path):
    settings = launched(emu, tmp_path)
    deploy.OciPublisher(settings).publish("echo", [(5678, "tcp")], "198.51.100.0/24", lambda line: None)
    assert open_from_outside(emu) == set()  # 203.0.113.7 is outside that network
    assert all(reaches(emu, "198.51.100.9", [], v, TCP, 5678) for v in vnics(emu))


def test_destroy_deletes_the_public_group_with_the_cluster(emu: Emulator, tmp_path: Path):
    settings = launched(emu, tmp_path)
    deploy.OciPublisher(settings).publish("lb", [(80, "tcp")], "0.0.0.0/0", lambda line: None)
    cap = Capture()
    lifecycle.destroy(settings, yes=True, provider=OciProvider(settings, sleep=lambda s: None),
                      console=lifecycle.Console(cap.buffer))  # fmt: skip
    assert live_nsgs(emu) == []


def test_opening_to_everyone_asks_first(tmp_path: Path):
    from tests import jobs_support as js

    settings = js.demo_settings(tmp_path)
    asked: list[str] = []
    no = lambda prompt: asked.append(prompt) or "n"  # noqa: E731
    assert not deploy.confirm_public(settings, [spec.Job.KNOTDNS], False, no, lambda: True)
    assert asked == ["deploy would open knotdns (udp 53, tcp 53) to 0.0.0.0/0 (the whole internet). Continue? [y/N] "]
    assert deploy.confirm_public(settings, [spec.Job.ECHO], False, lambda p: "y", lambda: True)
    assert deploy.confirm_public(settings, [spec.Job.ECHO], True, no, lambda: False)  # --yes
    assert deploy.confirm_public(settings, [spec.Job.WEB], False, no, lambda: False)  # web publishes nothing
    narrow = js.demo_settings(tmp_path, public_cidr="198.51.100.0/24")
    assert deploy.confirm_public(narrow, [spec.Job.LB], False, no, lambda: False)
    with pytest.raises(ConfigError, match=r"deploy would open lb \(tcp 80\) to 0\.0\.0\.0/0 .*no terminal.*--yes"):
        deploy.confirm_public(settings, [spec.Job.LB], False, no, lambda: False)


def test_a_declined_deploy_submits_nothing(tmp_path: Path):
    from tests import jobs_support as js

    settings = js.demo_settings(tmp_path)
    said: list[str] = []

    class Never:
        def publish(self, *a: object) -> None:
            raise AssertionError("nothing may be opened")

        def unpublish(self, *a: object) -> None:
            raise AssertionError("nothing may be closed")

    deploy.deploy(settings, [spec.Job.LB], dry_run=False, say=said.append, ask=lambda p: "no",
                  interactive=lambda: True, publisher=Never())  # fmt: skip
    assert said[-1] == "nothing done"  # no tunnel was opened: there is no ssh_config in this project
