"""Benchmark: `launch` against the local OCI emulator with a fixed provisioning delay, for N = 1, 5, 20.

Prints wall time per N, its ratio to N = 1 (parallel launch keeps it near 1), API calls per node, and the
start-up time of `invoke --list` (which must not import the oci SDK).

    .venv/bin/python benchmarks/launch.py [--delay 3] [--counts 1,5,20]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nomadic import lifecycle  # noqa: E402
from nomadic.providers.oci import OciProvider  # noqa: E402
from tests.ociemu import Emulator  # noqa: E402
from tests.ociemu.testing import settings_for  # noqa: E402


def _serve(delay: float, cidr: str, conn: Connection) -> None:
    """The emulator in its own process, so that its work does not share the launcher's interpreter lock."""
    with Emulator(provisioning_delay=delay, cidr=cidr, micro_limit=10_000) as emu:
        conn.send(emu.url)
        conn.recv()  # "stop"
        conn.send(sum(emu.calls.values()))


def launch_once(count: int, delay: float) -> tuple[float, int]:
    cidr = "10.0.0.0/16"
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(delay, cidr, theirs), daemon=True)
    server.start()
    try:
        url = ours.recv()
        with tempfile.TemporaryDirectory() as tmp:
            stub = SimpleNamespace(url=url, cidr=cidr)
            settings = settings_for(stub, Path(tmp), cluster={"count": count, "cidr": cidr}, oci={"allow_paid": True})  # type: ignore[arg-type]
            quiet = lifecycle.Console(io.StringIO())
            started = time.perf_counter()
            nodes = lifecycle.launch(settings, None, False, provider=OciProvider(settings), console=quiet)
            wall = time.perf_counter() - started
        assert len(nodes) == count and all(n.state == "RUNNING" for n in nodes)
        ours.send("stop")
        return wall, ours.recv()
    finally:
        server.join(timeout=10)


def startup(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "invoke"), "-r", str(ROOT), "--list"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=3.0, help="emulated PROVISIONING time per instance, seconds")
    parser.add_argument("--counts", default="1,5,20")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"emulated provisioning delay: {args.delay:.1f}s per instance")
    print(f"{'N':>4}  {'wall s':>8}  {'ratio':>6}  {'API calls':>9}  {'calls/node':>10}")
    launch_once(1, 0.0)  # warm-up: the SDK import and first connections are not what N measures
    base = None
    for n in counts:
        wall, calls = launch_once(n, args.delay)
        base = base or wall
        print(f"{n:>4}  {wall:>8.2f}  {wall / base:>6.2f}  {calls:>9}  {calls / n:>10.1f}")
    print(f"invoke --list start-up (median of 5): {startup():.3f}s")
    code = "import time; t = time.perf_counter(); import oci; print(time.perf_counter() - t)"
    oci_import = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    print(f"for comparison, 'import oci' alone: {oci_import:.3f}s (not paid by invoke --list)")


if __name__ == "__main__":
    main()
