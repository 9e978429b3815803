"""deploy / jobs / stop: render, validate and submit through an SSH tunnel to a server, then wait with progress."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from .. import proc
from ..config import Provider as ProviderKind, Settings
from ..errors import CloudError, ConfigError
from ..fsutil import write_text_atomic
from ..outputs import NOMAD_UI_PORT, SSH_CONFIG, format_table
from . import spec
from .nomadapi import NomadAPI, NomadError

TUNNEL_WAIT_S = 20.0
POLL_S = 2.0

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


def jobs_dir(settings: Settings) -> Path:
    return settings.cluster_dir / "jobs"


def render_all(settings: Settings, jobs: Sequence[spec.Job]) -> dict[spec.Job, Path]:
    """Render each job into build/<cluster>/jobs/<job>.nomad.hcl (all checks first: nothing written on error)."""
    nodes = spec.read_nodes(settings)
    texts = {job: spec.render_job(job, settings, nodes) for job in jobs}
    folder = jobs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    return {job: write_text_atomic(folder / f"{job.value}.nomad.hcl", text) for job, text in texts.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def tunnel(settings: Settings) -> Iterator[NomadAPI]:
    """Nomad's API on a server, through `ssh -L` with the ssh_config launch wrote; each server tried in turn."""
    ssh_config = settings.cluster_dir / SSH_CONFIG
    if not ssh_config.exists():
        raise ConfigError(
            f"no launch outputs for cluster {settings.cluster.name}: {ssh_config} does not exist",
            hint="run 'invoke launch' first (or pass --cluster NAME)",
        )
    servers = [n.name for n in spec.read_nodes(settings) if n.name and _is_server(settings, n.name)]
    tried: list[str] = []
    for server in servers:
        port = _free_port()
        argv = [
            "ssh", "-F", str(ssh_config), "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
            "-o", "ConnectTimeout=10", "-L", f"127.0.0.1:{port}:127.0.0.1:{NOMAD_UI_PORT}", server,
        ]  # fmt: skip
        log = jobs_dir(settings) / "tunnel.log"
        with proc.background(argv, log) as child:
            deadline = time.monotonic() + TUNNEL_WAIT_S
            while child.poll() is None and time.monotonic() < deadline and not _port_open(port):
                time.sleep(0.3)
            if child.poll() is None and _port_open(port):
                api = NomadAPI(f"http://127.0.0.1:{port}")
                try:
                    api.leader()
                except NomadError as exc:
                    tried.append(f"{server} (tunnel up, Nomad did not answer: {exc})")
                    continue
                yield api
                return
            last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] if log.exists() else []
            tried.append(f"{server} ({last[0] if last else 'no answer within the timeout'})")
    raise CloudError(
        f"cluster {settings.cluster.name} unreachable: tunnel ssh -F {ssh_config} -L 127.0.0.1:PORT:127.0.0.1:"
        f"{NOMAD_UI_PORT} failed to {'; '.join(tried) or 'no server in the inventory'}",
        hint="check 'invoke status' and that the nodes' SSH answers; see " + str(jobs_dir(settings) / "tunnel.log"),
    )


def _is_server(settings: Settings, name: str) -> bool:
    text = (settings.cluster_dir / "inventory.ini").read_text(encoding="utf-8")
    section = text.split("[servers]", 1)[-1].split("[", 1)[0]
    return any(line.split()[:1] == [name] for line in section.splitlines() if line.strip())


def _ready_clients(api: NomadAPI) -> int:
    return sum(1 for n in api.nodes() if n.get("Status") == "ready" and n.get("SchedulingEligibility") == "eligible")


def _allocation_problems(api: NomadAPI, job_id: str, version: int) -> list[str]:
    lines = []
    for alloc in api.allocations(job_id):
        if alloc.get("JobVersion") != version or alloc.get("ClientStatus") == "running":
            continue
        events = []
        for task, state in (alloc.get("TaskStates") or {}).items():
            for event in (state.get("Events") or [])[-2:]:
                events.append(f"{task}: {event.get('Type')}: {event.get('DisplayMessage') or event.get('Message', '')}")
        lines.append(
            f"allocation {alloc['ID'][:8]} on {alloc.get('NodeName', '?')} is {alloc.get('ClientStatus')}"
            + (f" ({'; '.join(events)})" if events else "")
        )
    return lines


def wait_healthy(api: NomadAPI, job_id: str, version: int, timeout: float, say: Say = _say) -> None:
    """Poll the job's deployment for this version until it succeeds; say each change of its progress."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        deployment = api.latest_deployment(job_id)
        if deployment and deployment.get("JobVersion") == version:
            groups = deployment.get("TaskGroups") or {}
            progress = ", ".join(
                f"{g}: {s.get('HealthyAllocs', 0)}/{s.get('DesiredTotal', 0)} healthy"
                + (f", {s['UnhealthyAllocs']} unhealthy" if s.get("UnhealthyAllocs") else "")
                for g, s in sorted(groups.items())
            )
            line = f"{job_id}: deployment {deployment['Status']}: {progress}"
            if line != last:
                say(line)
                last = line
            if deployment["Status"] == "successful":
                return
            if deployment["Status"] in ("failed", "cancelled"):
                problems = _allocation_problems(api, job_id, version)
                raise CloudError(
                    f"job {job_id}: deployment {deployment['Status']}: {deployment.get('StatusDescription', '')}"
                    + (f"; {'; '.join(problems)}" if problems else ""),
                    hint=f"'invoke jobs' shows where it runs; the allocations' logs are in Nomad (nomad alloc logs)",
                )
        if time.monotonic() > deadline:
            problems = _allocation_problems(api, job_id, version)
            raise CloudError(
                f"job {job_id} not healthy after {timeout:.0f}s"
                + (f": {'; '.join(problems)}" if problems else " (no allocation failed; still placing or pulling)"),
                hint="raise jobs.deploy_timeout_s, or look at 'invoke jobs' and 'nomad job status " + job_id + "'",
            )
        time.sleep(POLL_S)


class Publisher(Protocol):
    """Where a job's published ports are opened to the internet (OCI's public NSG); local clusters have none."""

    def publish(self, job: str, ports: Sequence[tuple[int, str]], cidr: str, say: Say) -> None: ...

    def unpublish(self, job: str, say: Say) -> None: ...


class OciPublisher:
    def __init__(self, settings: Settings) -> None:
        from ..providers.oci import OciProvider

        self.provider = OciProvider(settings)

    def publish(self, job: str, ports: Sequence[tuple[int, str]], cidr: str, say: Say) -> None:
        from ..providers.oci import public

        public.publish(self.provider, job, ports, cidr, say)

    def unpublish(self, job: str, say: Say) -> None:
        from ..providers.oci import public

        public.unpublish(self.provider, job, say)


def publisher_for(settings: Settings) -> Publisher | None:
    return OciPublisher(settings) if settings.cluster.provider is ProviderKind.OCI else None


def _ports(settings: Settings, job: spec.Job) -> list[tuple[int, str]]:
    return [(p.port, p.protocol) for p in spec.public_ports(job, settings)]


def confirm_public(
    settings: Settings, jobs: Sequence[spec.Job], yes: bool, ask: Callable[[str], str], interactive: Callable[[], bool]
) -> bool:
    """Ask before anything is opened to the whole internet; False when the user says no."""
    cidr = settings.jobs.public_cidr
    opening = [f"{job.value} ({', '.join(f'{proto} {port}' for port, proto in _ports(settings, job))})"
               for job in jobs if _ports(settings, job)]  # fmt: skip
    if yes or not opening or cidr != "0.0.0.0/0":
        return True
    what = f"deploy would open {'; '.join(opening)} to 0.0.0.0/0 (the whole internet)"
    if not interactive():
        raise ConfigError(f"{what} and there is no terminal to confirm on",
                          hint="pass --yes, or set jobs.public_cidr to a narrower network")  # fmt: skip
    return ask(f"{what}. Continue? [y/N] ").strip().lower() in ("y", "yes")


def deploy(
    settings: Settings,
    jobs: Sequence[spec.Job],
    dry_run: bool,
    yes: bool = False,
    say: Say = _say,
    ask: Callable[[str], str] = input,
    interactive: Callable[[], bool] = lambda: sys.stdin.isatty(),
    publisher: Publisher | None = None,
) -> None:
    """Render, validate (with the cluster's Nomad, or the local `nomad` on --dry-run), submit, wait, open ports."""
    files = render_all(settings, jobs)
    for job, path in files.items():
        say(f"{job.value}: rendered {path}")
    if dry_run:
        validate_offline(settings, files, say)
        if spec.Job.KNOTDNS in files:
            print_dns_records(settings, say)
        return
    public = publisher if publisher is not None else publisher_for(settings)
    if public is not None and not confirm_public(settings, jobs, yes, ask, interactive):
        say("nothing done")
        return
    with tunnel(settings) as api:
        submit(api, settings, files, say, public)


def submit(
    api: NomadAPI, settings: Settings, files: dict[spec.Job, Path], say: Say = _say, public: Publisher | None = None
) -> None:
    """Each rendered job through Nomad's parser and validator, registered, waited for until healthy; only then are
    its published ports opened (a job that failed opens nothing)."""
    clients = _ready_clients(api)
    for job, path in files.items():
        parsed = api.parse(path.read_text(encoding="utf-8"))
        if job is not spec.Job.WEB:
            # The render checked the launch outputs; Nomad's ready nodes are the truth at submit time.
            spec.check_static_count(job, parsed["TaskGroups"][0]["Count"], clients)
        for warning in api.validate(parsed):
            say(f"{job.value}: warning: {warning}")
        answer = api.register(parsed)
        current = api.job(job.value) or {}
        version = int(current.get("Version", 0))
        say(f"{job.value}: submitted (version {version}, evaluation {str(answer.get('EvalID', ''))[:8]})")
        wait_healthy(api, job.value, version, settings.jobs.deploy_timeout_s, say)
        if public is not None and _ports(settings, job):
            public.publish(job.value, _ports(settings, job), settings.jobs.public_cidr, say)
        if job is spec.Job.KNOTDNS:
            print_dns_records(settings, say)


def validate_offline(settings: Settings, files: dict[spec.Job, Path], say: Say = _say) -> None:
    """`nomad job validate` on each rendered file, when a nomad binary is installed here (skipped otherwise)."""
    try:
        nomad = proc.which(settings.build.nomad)
    except proc.ToolMissing:
        say(f"skip: {settings.build.nomad} not found here: rendered only (install Nomad to validate)")
        return
    for job, path in files.items():
        # No agent is needed for the job's own checks; NOMAD_ADDR points nowhere so none is contacted by chance.
        result = proc.run([nomad, "job", "validate", str(path)], env={"NOMAD_ADDR": "http://127.0.0.1:1", "PATH": ""},
                          check=False)  # fmt: skip
        if result.exit_code != 0:
            raise ConfigError(f"{path}: nomad job validate failed: {(result.stderr or result.stdout).strip()}")
        say(f"{job.value}: ok (nomad job validate)")


def print_dns_records(settings: Settings, say: Say = _say) -> None:
    addresses = spec.public_addresses(settings, spec.read_nodes(settings))
    say(f"Enter these records at the registrar of the zone above {settings.jobs.domain}:")
    for line in spec.dns_records(settings.jobs.domain, addresses):
        say(f"  {line}")


def list_jobs(settings: Settings, say: Say = _say) -> None:
    with tunnel(settings) as api:
        say(jobs_table(api))


def jobs_table(api: NomadAPI) -> str:
    """What runs where: one row per allocation of our jobs that is running or pending."""
    rows = []
    ours = {j.value for j in spec.Job}
    for summary in sorted(api.jobs(), key=lambda j: j["ID"]):
        if summary["ID"] not in ours:
            continue
        allocs = [a for a in api.allocations(summary["ID"]) if a.get("ClientStatus") in ("running", "pending")]
        if not allocs:
            rows.append([summary["ID"], summary.get("Status", ""), "-", "-", "-"])
        for alloc in sorted(allocs, key=lambda a: a.get("NodeName", "")):
            rows.append([summary["ID"], summary.get("Status", ""), alloc.get("NodeName", "?"),
                         alloc.get("ClientStatus", ""), alloc["ID"][:8]])  # fmt: skip
    if not rows:
        return "no jobs of ours on the cluster (invoke deploy --all)"
    return format_table(["JOB", "STATUS", "NODE", "ALLOCATION", "ID"], rows)


def stop(settings: Settings, jobs: Sequence[spec.Job], say: Say = _say, publisher: Publisher | None = None) -> None:
    public = publisher if publisher is not None else publisher_for(settings)
    with tunnel(settings) as api:
        stop_jobs(api, jobs, say)
    if public is not None:
        for job in jobs:
            public.unpublish(job.value, say)


def stop_jobs(api: NomadAPI, jobs: Sequence[spec.Job], say: Say = _say) -> None:
    for job in jobs:
        current = api.job(job.value)
        if current is None or current.get("Stop"):
            say(f"{job.value}: not running")
            continue
        api.deregister(job.value)
        say(f"{job.value}: stopped")
