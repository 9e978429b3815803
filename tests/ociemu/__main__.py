"""Run the emulator by hand: `.venv/bin/python -m tests.ociemu [--delay S]`, then paste the printed exports."""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from .server import IMAGE, Emulator
from .testing import env_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=5.0, help="seconds an instance stays PROVISIONING")
    parser.add_argument("--capacity-ads", default="", help="comma-separated ADs that answer 'Out of host capacity'")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ociemu-"))
    emu = Emulator(provisioning_delay=args.delay, terminating_delay=args.delay)
    emu.capacity_ads = {a for a in args.capacity_ads.split(",") if a}
    with emu:
        for key, value in env_for(emu, folder).items():
            print(f"export {key}={value}")
        print(f"# image to pass: --image-id {IMAGE}")
        print("# Ctrl-C stops the emulator", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
