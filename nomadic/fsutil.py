"""Small file helpers: records other commands read are replaced whole, never seen half-written; digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import ConfigError


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write beside `path`, then rename over it (a reader sees the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
    return path


def check_writable_dirs(*folders: Path) -> None:
    """Each folder, or its nearest existing parent, is a folder we may write: checked before any write."""
    for folder in folders:
        probe = folder
        while not os.path.lexists(probe) and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"{probe} is not a folder; {folder} must be one", hint=f"move {probe} out of the way")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(f"{probe} is not writable; {folder} is written there", hint=f"fix the permissions of {probe}")


def sha256_file(path: Path) -> str:
    """The file's SHA-256 in hex, read in 1 MiB blocks (images and agent binaries are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
