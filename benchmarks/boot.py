"""Benchmark: boot a local VM cluster from the VM tests' image (real cloud-init, Consul and Nomad) and print, per
node, seconds from its VM's start to sshd, cloud-init done, Consul member / leader known, Nomad client ready /
leader known, and each agent's resident memory once the cluster has formed. It prints figures; it asserts nothing.

    .venv/bin/python benchmarks/boot.py [--count 3] [--servers N] [--memory-mb 1024] [--accel tcg] [--keep]

Needs what the VM test needs (QEMU, the test agents, root for the first image build). The times come from each
guest's own clocks: systemd's monotonic timestamps and the agents' journal, offset by how long after its qemu
process started the guest kernel began (taken from the host's /proc and the guest's boot time).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nomadic import config, health, lifecycle, outputs, proc  # noqa: E402
from nomadic.providers.local import LocalProvider, tcp_port_free, udp_port_free  # noqa: E402
from tests.integration import testimage  # noqa: E402

# First journal line (monotonic seconds) of each milestone; the agents' own log messages (Consul 1.16, Nomad 1.6).
MILESTONES = {
    "consul member": ("consul", r"Join cluster completed|\(LAN\) joined"),
    "consul leader": ("consul", r"New leader elected|cluster leadership acquired"),
    "nomad leader": ("nomad", r"cluster leadership acquired|raft: entering follower state.*leader-address=\S+:\d+|"
                              r"nomad: adding server"),
    "nomad client ready": ("nomad", r"node registration complete"),
}
PROBE = r"""
echo "now $(date +%s.%N)"; echo "uptime $(cut -d' ' -f1 /proc/uptime)"
for u in ssh cloud-final; do echo "$u $(systemctl show -p ActiveEnterTimestampMonotonic --value $u.service)"; done
for u in consul nomad; do
  pid=$(systemctl show -p MainPID --value $u.service)
  echo "rss-$u $(ps -o rss= -p "$pid" 2>/dev/null || echo 0)"
  journalctl -b -u $u.service -o short-monotonic --no-pager | sed "s/^/log-$u /"
done
free -m | sed 's/^/free /'
"""


def free_base(count: int, start: int, check) -> int:
    for base in range(start, start + 2000, 10):
        if all(check(base + i) for i in range(count + 1)):
            return base
    raise SystemExit(f"no free loopback ports near {start}")


def qemu_started_at(pid: int) -> float:
    """Wall-clock time at which process `pid` started (from /proc/<pid>/stat and the host's boot time)."""
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def parse(text: str) -> tuple[dict[str, float], dict[str, list[tuple[float, str]]], list[str]]:
    values: dict[str, float] = {}
    logs: dict[str, list[tuple[float, str]]] = {"consul": [], "nomad": []}
    free: list[str] = []
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key.startswith("log-"):
            m = re.match(r"\[\s*([\d.]+)\]\s*(.*)", rest)
            if m:
                logs[key[4:]].append((float(m.group(1)), m.group(2)))
        elif key == "free":
            free.append(rest)
        elif rest.strip():
            try:
                values[key] = float(rest.split()[0])
            except ValueError:
                pass
    return values, logs, free


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--servers", type=int, default=None, help="default: every node")
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running (destroy it yourself)")
    args = ap.parse_args()

    image = testimage.build(testimage.agents(), log=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="nomadic-boot-bench-"))
    key = work / "id_ed25519"
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    raw = {
        "cluster": {"name": "bootbench", "provider": "local", "count": args.count,
                    "servers": args.servers if args.servers is not None else args.count,
                    "ssh_public_key": f"{key}.pub", "ssh_private_key": str(key), "wait_timeout_s": 1800},
        "local": {"accel": args.accel, "memory_mb": args.memory_mb, "cpus": 1, "boot_timeout_s": 900,
                  "ssh_user": "debian", "ssh_port_base": free_base(args.count, 23200, tcp_port_free),
                  "cluster_port_base": free_base(args.count, 43000, udp_port_free),
                  "kernel": str(image.kernel), "initrd": str(image.initrd), "append": image.append},
    }
    settings = config.load(raw, work)
    quiet = lifecycle.Console(sys.stderr)
    try:
        started = time.time()
        nodes = lifecycle.launch(settings, str(image.disk), wait_cluster=False, console=quiet)
        health.wait(settings, nodes, say=lambda s: print(s, file=sys.stderr), interval=5)
        formed = time.time() - started
        time.sleep(20)  # let the agents settle before reading their memory
        records = {r.name: r for r in LocalProvider(settings).records()}
        ssh_config = settings.cluster_dir / outputs.SSH_CONFIG
        print(f"\n{args.count} nodes ({raw['cluster']['servers']} servers), {args.memory_mb} MB, 1 vCPU each, "
              f"{args.accel}; cluster healthy {formed:.0f}s after launch began")
        print(f"{'node':<14}{'sshd':>7}{'cloud-init':>11}{'consul':>8}{'c-leader':>9}{'nomad-cl':>9}{'n-leader':>9}"
              f"{'consul RSS':>11}{'nomad RSS':>10}{'used/avail MB':>15}")
        for n in nodes:
            out = proc.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", n.name, "--", "sudo", "-n", "bash",
                            "-c", proc.show([PROBE])], check=False, timeout=120).stdout
            values, logs, free = parse(out)
            guest_boot = values["now"] - values["uptime"]
            offset = guest_boot - qemu_started_at(records[n.name].pid)  # qemu start -> guest kernel start

            def at(mono: float | None) -> str:
                return "-" if mono is None else f"{offset + mono:.0f}"

            cols = [at(values["ssh"] / 1e6), at(values["cloud-final"] / 1e6)]
            for name, (agent, pattern) in MILESTONES.items():
                hit = next((t for t, msg in logs[agent] if re.search(pattern, msg)), None)
                cols.append(at(hit))
            mem = next((f.split() for f in free if f.startswith("Mem:")), [])
            used = f"{mem[2]}/{mem[6]}" if len(mem) > 6 else "?"
            print(f"{n.name:<14}{cols[0]:>7}{cols[1]:>11}{cols[2]:>8}{cols[3]:>9}{cols[5]:>9}{cols[4]:>9}"
                  f"{values.get('rss-consul', 0) / 1024:>9.0f}MB{values.get('rss-nomad', 0) / 1024:>8.0f}MB{used:>15}")
        print("seconds from each VM's qemu start; RSS once the cluster formed; used/avail from free -m")
    finally:
        if not args.keep:
            lifecycle.destroy(settings, yes=True, console=lifecycle.Console(open(os.devnull, "w")))


if __name__ == "__main__":
    main()
