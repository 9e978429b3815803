"""The cluster network hub: frames from one VM port reach every other peer port, on loopback only."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from nomadic import hub, proc
from nomadic.providers.local import udp_port_free


def free_ports(n: int, start: int = 47000) -> list[int]:
    ports = [p for p in range(start, start + 400) if udp_port_free(p)]
    if len(ports) < n:
        pytest.skip("no free UDP ports on loopback")
    return ports[:n]


def bound(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(5)
    return s


def test_forward_skips_the_sender_only() -> None:
    hub_port, a, b, c = free_ports(4)
    with bound(hub_port) as h, bound(a) as sa, bound(b) as sb, bound(c) as sc:
        sent = hub.forward(h, [a, b, c], b"frame", ("127.0.0.1", a))
        assert sent == 2
        assert sb.recvfrom(100) == (b"frame", ("127.0.0.1", hub_port))
        assert sc.recvfrom(100)[0] == b"frame"
        sa.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sa.recvfrom(100)


def test_daemonized_hub_repeats_between_three_peers(tmp_path: Path) -> None:
    hub_port, a, b, c = free_ports(4)
    pid_file = tmp_path / "hub.pid"
    argv = [sys.executable, "-m", "nomadic.hub", "--port", str(hub_port), "--pid-file", str(pid_file), "--daemonize"]
    for p in (a, b, c):
        argv += ["--peer", str(p)]
    pid = proc.spawn(argv, pid_file)
    try:
        assert proc.is_ours(pid, "python", str(pid_file))
        with bound(a) as sa, bound(b) as sb, bound(c) as sc:
            sa.sendto(b"from-a", ("127.0.0.1", hub_port))
            assert sb.recvfrom(100)[0] == b"from-a"
            assert sc.recvfrom(100)[0] == b"from-a"
            sc.sendto(b"from-c", ("127.0.0.1", hub_port))
            assert sa.recvfrom(100)[0] == b"from-c"
            assert sb.recvfrom(100)[0] == b"from-c"
    finally:
        assert proc.terminate(pid, "python", str(pid_file), timeout=5)
    assert not proc.cmdline(pid)


def test_hub_reports_a_taken_port(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with bound(port):
        argv = [sys.executable, "-m", "nomadic.hub", "--port", str(port), "--pid-file", str(tmp_path / "p"), "--daemonize"]
        with pytest.raises(proc.CommandFailed, match="cannot bind UDP 127.0.0.1"):
            proc.spawn(argv, tmp_path / "p")
