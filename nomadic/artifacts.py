"""The record of what build-image produced, where launch finds it: build/artifacts.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Settings, Target
from .errors import ConfigError
from .fsutil import write_text_atomic


def path(settings: Settings) -> Path:
    return settings.build_dir / "artifacts.json"


def _read(settings: Settings) -> dict[str, Any]:
    p = path(settings)
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON ({exc})", hint="delete it and run build-image again") from None
    return data if isinstance(data, dict) else {}


def _write(settings: Settings, data: dict[str, Any]) -> Path:
    p = path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(p, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record(settings: Settings, target: Target, image: str, artifact: dict[str, Any]) -> Path:
    """Remember the newest artifact for (target, image definition); older records are replaced."""
    data = _read(settings)
    data.setdefault(target.value, {})[image] = artifact
    return _write(settings, data)


# Where import-image records an imported AlmaLinux image for build-image --target oci to bake on.
OCI_BASE = "oci_base"


def record_base(settings: Settings, image: str, artifact: dict[str, Any]) -> Path:
    """Remember the imported OCI base image for image definition `image`."""
    data = _read(settings)
    data.setdefault(OCI_BASE, {})[image] = artifact
    return _write(settings, data)


def lookup_base(settings: Settings, image: str) -> dict[str, Any] | None:
    found = _read(settings).get(OCI_BASE, {})
    entry = found.get(image) if isinstance(found, dict) else None
    return entry if isinstance(entry, dict) else None


def lookup(settings: Settings, target: Target, image: str | None = None) -> dict[str, Any] | None:
    """The recorded artifact for target and image definition (default build.image), or None."""
    found = _read(settings).get(target.value, {})
    entry = found.get(image or settings.build.image) if isinstance(found, dict) else None
    if entry is not None and not isinstance(entry, dict):
        raise ConfigError(f"{path(settings)}: the {target.value} entry is malformed", hint="delete it and run build-image again")
    return entry
