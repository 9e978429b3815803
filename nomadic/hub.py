"""The local cluster network: a UDP frame hub on loopback that repeats each VM's Ethernet frames to the others.

QEMU's `-netdev socket,udp=HUB,localaddr=PORT` sends every frame of a NIC as one datagram to HUB and takes
frames arriving at PORT. Point-to-point UDP joins only two VMs; this hub joins N on one L2 segment without
root, bridges or multicast. It floods (a repeater, not a learning switch): a handful of VMs carry little traffic.
Run as `python -m nomadic.hub --port HUB --peer PORT ... --pid-file F --daemonize`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Sequence

LOOPBACK = "127.0.0.1"
MAX_FRAME = 65536


def forward(sock: socket.socket, peers: Sequence[int], data: bytes, source: tuple[str, int]) -> int:
    """Send one frame to every peer but its sender; returns how many copies went out."""
    sent = 0
    for port in peers:
        if source == (LOOPBACK, port):
            continue
        try:
            sock.sendto(data, (LOOPBACK, port))
            sent += 1
        except OSError:
            pass  # a VM that is not (yet) listening loses the frame, as on a real segment
    return sent


def serve(sock: socket.socket, peers: Sequence[int]) -> None:
    allowed = {(LOOPBACK, p) for p in peers}
    while True:
        try:
            data, source = sock.recvfrom(MAX_FRAME)
        except OSError:
            continue
        if source in allowed:  # frames from anyone else on loopback are not ours to repeat
            forward(sock, peers, data, source)


def _daemonize(pid_file: Path) -> None:
    """Classic double fork; the first parent returns only after the pid file exists (like qemu -daemonize)."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        os.read(read_fd, 1)  # wait for the grandchild to write the pid file
        os._exit(0)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.write(write_fd, b"x")
    os.close(write_fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nomadic.hub", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="UDP port on 127.0.0.1 the VMs send to")
    parser.add_argument("--peer", type=int, action="append", default=[], help="a VM's UDP port (repeat)")
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--daemonize", action="store_true")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((LOOPBACK, args.port))  # before daemonizing: a taken port is an error the caller sees
    except OSError as exc:
        print(f"hub: cannot bind UDP {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.daemonize:
        _daemonize(args.pid_file)
    else:
        args.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    serve(sock, args.peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
