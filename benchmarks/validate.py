"""Benchmark: `invoke validate` (commands.validate) for N = 1, 7, 50 nodes, with the agents' validators.

Prints, per N, the wall time and the CPU time (this process and its children) of the whole validate (render,
both cloud-init schemas, firewalld, HCL, the cluster checks, `consul validate` and `nomad config validate` per
node, packer validate), and the wall time of its parts: render alone, the per-node file checks, the agents'
validators. The agents are tests/agents.py's builds; without them
the agent column says "absent" and the total leaves them out.

    .venv/bin/python benchmarks/validate.py [--counts 1,7,50] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nomadic import agentcheck, commands, config, nodecheck, nodeconfig  # noqa: E402
from tests import agents  # noqa: E402


def cpu_seconds() -> float:
    """User + system time of this process and its finished children: unlike wall time, not inflated by load."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        fn()
    return time.perf_counter() - started


def measure(count: int, binaries: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nomadic-bench-") as tmp:
        s = config.load({"cluster": {"count": count}, "build": binaries}, Path(tmp))
        cpu = cpu_seconds()
        figures = {"validate": timed(lambda: commands.validate(s))}
        figures["cpu"] = cpu_seconds() - cpu
        figures["render"] = timed(lambda: commands.render(s))
        nodes = nodeconfig.nodes_dir(s)
        figures["files"] = timed(lambda: nodecheck.validate_written(nodes))
        figures["agents"] = timed(lambda: agentcheck.validate_nodes(nodes, binaries)) if binaries else float("nan")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", default="1,7,50")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N; the best is shown")
    args = parser.parse_args()
    try:
        binaries = {name: str(path) for name, path in agents.find().items()}
    except agents.AgentsUnavailable as exc:
        print(f"note: agents absent ({exc}); their validators are left out", file=sys.stderr)
        binaries = {"consul": "", "nomad": ""}
    print(f"validator jobs in parallel: {agentcheck.jobs()}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'nodes':>5} {'validate s':>10} {'cpu s':>6} {'render s':>9} {'files s':>8} {'agents s':>9}")
    for count in (int(c) for c in args.counts.split(",")):
        runs = [measure(count, binaries) for _ in range(args.repeat)]
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        agents_col = f"{best['agents']:9.2f}" if binaries["consul"] else f"{'absent':>9}"
        print(
            f"{count:>5} {best['validate']:10.2f} {best['cpu']:6.2f} {best['render']:9.2f} {best['files']:8.2f}"
            f" {agents_col}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
