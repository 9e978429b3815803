"""The jobs' rendering and the checks before anything is submitted: golden files, the count guard, the zone serial,
the DNS records to enter, the launch outputs read, and each error as one line naming the setting or file.

Regenerate the golden files after an intended template change with:
    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_jobs.py -k golden
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nomadic import commands, config
from nomadic.errors import ConfigError, PlanError
from nomadic.jobs import spec
from tests import jobs_support as js

GOLDEN = Path(__file__).parent / "golden" / "jobs"
FIXED_SERIAL_TIME = 1767225600  # 2026-01-01T00:00:00Z


def demo(tmp_path: Path, **jobs: object) -> config.Settings:
    return js.demo_settings(tmp_path, **jobs)


@pytest.mark.parametrize("job", list(spec.Job), ids=lambda j: j.value)
def test_golden(job: spec.Job, tmp_path: Path):
    settings = demo(tmp_path)
    state = settings.cluster_dir / "jobs" / "knotdns.serial.json"
    spec.zone_serial(state, js.DOMAIN, js.ADDRESSES, now=FIXED_SERIAL_TIME)
    text = spec.render_job(job, settings, spec.read_nodes(settings))
    golden = GOLDEN / f"{job.value}.nomad.hcl"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_the_launch_outputs_give_nodes_roles_and_addresses(tmp_path: Path):
    nodes = spec.read_nodes(demo(tmp_path))
    assert nodes == [
        spec.ClusterNode("demo-01", "10.0.0.2", "192.0.2.10", True),
        spec.ClusterNode("demo-02", "10.0.0.3", "198.51.100.11", True),
    ]


def test_no_launch_outputs_is_one_error_naming_the_file(tmp_path: Path):
    settings = config.load({"cluster": {"name": "gone"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"no launch outputs for cluster gone: .*build/gone/inventory.ini does not exist"):
        spec.read_nodes(settings)


def test_the_records_for_the_registrar_are_ns_and_glue_for_every_address():
    assert spec.dns_records("oracle.example.com", ["192.0.2.1", "192.0.2.2"]) == [
        "oracle.example.com.  IN  NS  ns1.oracle.example.com.",
        "oracle.example.com.  IN  NS  ns2.oracle.example.com.",
        "ns1.oracle.example.com.  IN  A  192.0.2.1",
        "ns1.oracle.example.com.  IN  A  192.0.2.2",
        "ns2.oracle.example.com.  IN  A  192.0.2.1",
        "ns2.oracle.example.com.  IN  A  192.0.2.2",
    ]


@pytest.mark.parametrize(("count", "nodes"), [(1, 1), (2, 2), (2, 3)])
def test_placement_guard_accepts_a_count_the_nodes_can_hold(count: int, nodes: int):
    spec.check_static_count(spec.Job.ECHO, count, nodes)


@pytest.mark.parametrize(("count", "nodes"), [(3, 2), (2, 1), (1, 0)])
def test_placement_guard_refuses_more_instances_than_nodes(count: int, nodes: int):
    with pytest.raises(PlanError) as caught:
        spec.check_static_count(spec.Job.ECHO, count, nodes)
    assert str(caught.value).startswith("job echo: ")
    assert "\n" not in str(caught.value)


def test_echo_count_defaults_to_one_per_client_and_a_larger_one_is_refused(tmp_path: Path):
    assert "count = 2\n" in js.rendered(spec.Job.ECHO, tmp_path)
    assert "count = 1\n" in js.rendered(spec.Job.ECHO, tmp_path, echo_count=1)
    with pytest.raises(PlanError, match=r"job echo: count 3 is more than the 2 client nodes .*jobs\.echo_count"):
        js.rendered(spec.Job.ECHO, tmp_path, echo_count=3)


def test_zone_serial_stays_while_the_zone_is_unchanged_and_grows_with_every_change(tmp_path: Path):
    state = tmp_path / "serial.json"
    first = spec.zone_serial(state, "oracle.example.com", ["192.0.2.1"], now=1_800_000_000)
    assert first == 1_800_000_000
    assert spec.zone_serial(state, "oracle.example.com", ["192.0.2.1"], now=1_900_000_000) == first
    second = spec.zone_serial(state, "oracle.example.com", ["192.0.2.1", "192.0.2.2"], now=1_800_000_500)
    assert second == 1_800_000_500
    # A clock behind the last serial still gives a greater one.
    assert spec.zone_serial(state, "oracle.example.com", ["192.0.2.3"], now=1_000) == second + 1


def test_a_broken_serial_record_is_named_not_replaced(tmp_path: Path):
    state = tmp_path / "serial.json"
    state.write_text("{not json")
    with pytest.raises(ConfigError, match="serial.json is not a zone serial record"):
        spec.zone_serial(state, "oracle.example.com", ["192.0.2.1"])
    assert state.read_text() == "{not json"


def test_knotdns_without_a_domain_names_the_setting(tmp_path: Path):
    settings = demo(tmp_path, domain="")
    with pytest.raises(ConfigError, match=r"setting jobs\.domain is empty"):
        spec.render_job(spec.Job.KNOTDNS, settings, spec.read_nodes(settings))


def test_public_addresses_come_from_the_setting_or_the_launch_outputs(tmp_path: Path):
    settings = demo(tmp_path)
    nodes = spec.read_nodes(settings)
    assert spec.public_addresses(settings, nodes) == list(js.ADDRESSES)
    override = demo(tmp_path, public_addresses="203.0.113.5")
    assert spec.public_addresses(override, nodes) == ["203.0.113.5"]
    no_public = [spec.ClusterNode("demo-01", "10.0.0.2", "", True)]
    with pytest.raises(ConfigError, match=r"no public address known for demo-01 .*jobs\.public_addresses"):
        spec.public_addresses(settings, no_public)
    local = config.with_overrides(settings, cluster={"provider": config.Provider.LOCAL})
    assert spec.public_addresses(local, no_public) == ["10.0.0.2"]  # local VMs: the cluster network address


def test_each_job_publishes_exactly_its_ports(tmp_path: Path):
    settings = demo(tmp_path)
    ports = {job.value: [(p.port, p.protocol) for p in spec.public_ports(job, settings)] for job in spec.Job}
    assert ports == {"echo": [(5678, "tcp")], "knotdns": [(53, "udp"), (53, "tcp")], "web": [], "lb": [(80, "tcp")]}


def test_deploy_wants_one_job_or_all_and_knows_its_jobs(tmp_path: Path):
    settings = demo(tmp_path)
    with pytest.raises(ConfigError, match="give one job or --all"):
        commands.deploy(settings, job=None, every=False, dry_run=True)
    with pytest.raises(ConfigError, match="give one job or --all"):
        commands.deploy(settings, job="echo", every=True, dry_run=True)
    with pytest.raises(ConfigError, match=r"unknown job 'ftp' \(the jobs are echo, knotdns, web, lb"):
        commands.deploy(settings, job="ftp", every=False, dry_run=True)


def test_a_failing_job_writes_no_job_file(tmp_path: Path):
    settings = demo(tmp_path, domain="")
    with pytest.raises(ConfigError):
        commands.deploy(settings, job=None, every=True, dry_run=True)
    assert not (settings.cluster_dir / "jobs" / "echo.nomad.hcl").exists()


def test_dry_run_renders_every_job_and_says_when_no_nomad_can_validate(tmp_path: Path, capsys: pytest.CaptureFixture):
    settings = config.with_overrides(demo(tmp_path), build={"nomad": "nomad-is-not-installed-here"})
    commands.deploy(settings, job=None, every=True, dry_run=True)
    out = capsys.readouterr().out
    for job in spec.Job:
        assert f"{job.value}: rendered {settings.cluster_dir / 'jobs' / (job.value + '.nomad.hcl')}" in out
    assert "skip: nomad-is-not-installed-here not found here: rendered only" in out
    assert "Enter these records at the registrar of the zone above oracle.example.com:" in out
    assert "  ns2.oracle.example.com.  IN  A  198.51.100.11" in out
    serial = json.loads((settings.cluster_dir / "jobs" / "knotdns.serial.json").read_text())["serial"]
    assert f"serial {serial}." in (settings.cluster_dir / "jobs" / "knotdns.nomad.hcl").read_text()
