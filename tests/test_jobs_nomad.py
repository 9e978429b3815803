"""The rendered jobs against a real Nomad (1.6.3, built by tests/agents.py) running as a one-node server on loopback.

What runs for real: Nomad's parser and validator (`nomad job validate` and the HTTP API the deploy uses), job
registration, deployments, deregistration. What stands in: nothing is scheduled, because the agent has no client
(and no Docker exists here); so placement and health are tested only as "never healthy in time", and the count
guard sees zero ready nodes. `ssh` is real too: the tunnel test points it at a loopback port nobody listens on.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from nomadic.errors import CloudError, PlanError
from nomadic.jobs import deploy, spec
from nomadic.jobs.nomadapi import NomadAPI, NomadError
from tests import jobs_support as js

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def agent() -> Iterator[NomadAPI]:
    folder = js.scratch()
    try:
        with js.nomad_agent(folder) as address:
            yield NomadAPI(address)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rendered_files(root: Path, **jobs: object) -> dict[spec.Job, Path]:
    settings = js.demo_settings(root, **jobs)
    return deploy.render_all(settings, list(spec.Job))


def group(job: dict) -> dict:
    assert len(job["TaskGroups"]) == 1
    return job["TaskGroups"][0]


def test_every_job_passes_nomad_job_validate_against_the_agent(agent: NomadAPI, tmp_path: Path):
    for job, path in rendered_files(tmp_path).items():
        out = subprocess.run([js.nomad_binary(), "job", "validate", f"-address={agent.address}", str(path)],
                             capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 0, f"{job.value}: {out.stdout}{out.stderr}"
        assert "Job validation successful" in out.stdout
        assert "Driver configuration not validated" not in out.stdout + out.stderr  # the agent did answer
        agent.validate(agent.parse(path.read_text()))


def test_jobs_have_the_structure_the_design_asks_for(agent: NomadAPI, tmp_path: Path):
    files = rendered_files(tmp_path)
    parsed = {job: agent.parse(path.read_text()) for job, path in files.items()}
    for job, body in parsed.items():
        g = group(body)
        assert body["ID"] == job.value and body["Datacenters"] == ["dc1"] and body["Type"] == "service"
        assert [s["Attribute"] for s in g["Spreads"]] == ["${node.unique.id}"]
        assert g["Tasks"][0]["Driver"] == "docker"
    echo, knot, web, lb = (group(parsed[j]) for j in spec.Job)
    # Two client nodes in the test inventory: one instance on each, bound to a static port.
    for g, port in ((echo, 5678), (knot, 53), (lb, 80)):
        assert g["Count"] == 2
        assert [p["Value"] for p in g["Networks"][0]["ReservedPorts"]] == [port]
        assert [c["Operand"] for c in g["Constraints"]] == ["distinct_hosts"]
    assert echo["Tasks"][0]["Config"]["args"] == ["-listen", ":5678", "-text", "hello world"]
    assert web["Count"] == 2 and not web["Networks"][0].get("ReservedPorts")
    (service,) = web["Services"]
    assert service["Name"] == "web" and service["Provider"] == "consul"
    assert [(c["Type"], c["Path"]) for c in service["Checks"]] == [("http", "/healthz")]
    (haproxy_tpl,) = lb["Tasks"][0]["Templates"]
    assert '{{- range service "web" }}' in haproxy_tpl["EmbeddedTmpl"]
    assert (haproxy_tpl["ChangeMode"], haproxy_tpl["ChangeSignal"]) == ("signal", "SIGUSR2")
    assert sorted(t["DestPath"] for t in knot["Tasks"][0]["Templates"]) == ["local/knot.conf",
                                                                           "local/oracle.example.com.zone"]


def test_a_count_above_the_ready_nodes_is_refused_before_anything_is_submitted(agent: NomadAPI, tmp_path: Path):
    settings = js.demo_settings(tmp_path)
    files = deploy.render_all(settings, [spec.Job.ECHO])
    with pytest.raises(PlanError, match="count 2 is more than the 0 client nodes"):
        deploy.submit(agent, settings, files, say=lambda line: None)
    assert agent.job("echo") is None


def test_a_job_nomad_rejects_is_nomads_own_message(agent: NomadAPI, tmp_path: Path):
    broken = tmp_path / "web.nomad.hcl"
    broken.write_text(rendered_files(tmp_path)[spec.Job.WEB].read_text().replace('driver = "docker"', 'driver = '))
    settings = js.demo_settings(tmp_path)
    with pytest.raises(NomadError, match=r"Nomad refused POST /v1/jobs/parse: .*web.nomad.hcl|Nomad refused POST /v1/jobs/parse: .*Invalid expression"):
        deploy.submit(agent, settings, {spec.Job.WEB: broken}, say=lambda line: None)


def test_a_deployment_that_never_becomes_healthy_times_out_saying_so_then_stop_removes_it(
    agent: NomadAPI, tmp_path: Path
):
    settings = js.demo_settings(tmp_path, deploy_timeout_s=4)
    files = deploy.render_all(settings, [spec.Job.WEB])
    said: list[str] = []
    with pytest.raises(CloudError, match=r"job web not healthy after 4s \(no allocation failed; still placing"):
        deploy.submit(agent, settings, files, say=said.append)
    assert said[0].startswith("web: submitted (version 0")
    assert any(line.startswith("web: deployment running: web: 0/2 healthy") for line in said)
    assert "web" in deploy.jobs_table(agent)
    deploy.stop_jobs(agent, [spec.Job.WEB], say=said.append)
    assert said[-1] == "web: stopped"
    assert agent.job("web")["Stop"] is True
    deploy.stop_jobs(agent, [spec.Job.WEB], say=said.append)
    assert said[-1] == "web: not running"


def test_an_unreachable_cluster_names_the_tunnel_and_the_node(tmp_path: Path):
    js.tool("ssh")
    settings = js.demo_settings(tmp_path)
    closed = js.free_port()
    (settings.cluster_dir / "ssh_config").write_text(
        f"Host demo-01\n  HostName 127.0.0.1\n  Port {closed}\n  User nobody\n  StrictHostKeyChecking no\n"
        f"  UserKnownHostsFile /dev/null\n"
    )
    with pytest.raises(CloudError) as caught:
        with deploy.tunnel(settings):
            pass
    message = str(caught.value)
    assert message.startswith("cluster demo unreachable: tunnel ssh -F ")
    assert "failed to demo-01 (" in message and "Connection refused" in message


def test_dry_run_validates_every_job_with_the_local_nomad(tmp_path: Path, capsys: pytest.CaptureFixture):
    from nomadic import commands, config

    settings = config.with_overrides(js.demo_settings(tmp_path), build={"nomad": js.nomad_binary()})
    commands.deploy(settings, job=None, every=True, dry_run=True)
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.endswith("(nomad job validate)")] == [
        f"{job.value}: ok (nomad job validate)" for job in spec.Job
    ]
