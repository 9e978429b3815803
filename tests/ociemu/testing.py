"""Settings and helpers for tests that drive the real oci SDK against the emulator."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from nomadic import artifacts, config
from nomadic.config import Target

from .server import COMPARTMENT, IMAGE, SUBNET, Emulator, write_oci_config

SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vbWFkaWMtZW11bGF0b3ItdGVzdC1rZXktMzJieXRl test@nomadic"


def env_for(emu: Emulator, root: Path, **extra: str) -> dict[str, str]:
    """INVOKE_* variables that point a task at the emulator (for subprocess tests)."""
    oci_config = write_oci_config(root / "oci")
    pub = root / "id_ed25519.pub"
    pub.write_text(SSH_PUBLIC_KEY + "\n", encoding="utf-8")
    env = {
        "INVOKE_OCI_CONFIG_FILE": str(oci_config),
        "INVOKE_OCI_ENDPOINT": emu.url,
        "INVOKE_OCI_COMPARTMENT_ID": COMPARTMENT,
        "INVOKE_OCI_SUBNET_ID": SUBNET,
        "INVOKE_OCI_POLL_INTERVAL_S": "1",
        "INVOKE_OCI_BACKOFF_BASE_S": "0.01",
        "INVOKE_OCI_BACKOFF_MAX_S": "0.05",
        "INVOKE_CLUSTER_SSH_PUBLIC_KEY": str(pub),
        "INVOKE_CLUSTER_SSH_PRIVATE_KEY": str(root / "id_ed25519"),
        "INVOKE_CLUSTER_CIDR": emu.cidr,
    }
    env.update(extra)
    return env


def settings_for(emu: Emulator, root: Path, record_image: bool = True, **sections: dict[str, Any]) -> config.Settings:
    """Settings as tasks.py would load them, pointed at the emulator; `sections` override keys per section."""
    oci_config = write_oci_config(root / "oci")
    pub = root / "id_ed25519.pub"
    pub.write_text(SSH_PUBLIC_KEY + "\n", encoding="utf-8")
    raw: dict[str, dict[str, Any]] = {
        "oci": {
            "config_file": str(oci_config),
            "endpoint": emu.url,
            "compartment_id": COMPARTMENT,
            "subnet_id": SUBNET,
            "poll_interval_s": 1,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        },
        "cluster": {
            "cidr": emu.cidr,
            "ssh_public_key": str(pub),
            "ssh_private_key": str(root / "id_ed25519"),
        },
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    settings = config.load(raw, root)
    if record_image:
        artifacts.record(settings, Target.OCI, settings.build.image, {"image_id": IMAGE})
    return settings


class Capture:
    """A Console stream that keeps what was said."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()
