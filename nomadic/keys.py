"""The cluster's gossip encryption keys: made once, kept in secrets/<cluster>/ (0600), reused, never shown."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings
from .errors import ConfigError

KEY_FILE = "gossip-keys.json"
KEY_BYTES = 32  # Consul (keygen) and Nomad (operator gossip keyring generate) both use 32-byte AES keys


@dataclass(frozen=True)
class GossipKeys:
    """Consul's `encrypt` and Nomad's `server.encrypt`; repr hides them so they never reach a log."""

    consul: str = field(repr=False)
    nomad: str = field(repr=False)


def generate() -> GossipKeys:
    """Two fresh keys, standard base64 of 32 random bytes each (what `consul keygen` prints)."""
    return GossipKeys(
        consul=base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
        nomad=base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
    )


def key_path(settings: Settings) -> Path:
    return settings.secrets_dir / KEY_FILE


def _check_key(value: object, name: str, path: Path) -> str:
    hint = f"delete {path} to make new keys (a running cluster then needs them rotated in) or restore it from backup"
    if not isinstance(value, str):
        raise ConfigError(f"{path}: key {name!r} is missing or not text", hint=hint)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: key {name!r} is not base64", hint=hint) from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{path}: key {name!r} is {len(raw)} bytes, not {KEY_BYTES}", hint=hint)
    return value


def load(path: Path) -> GossipKeys:
    """Read and check a key file; a broken one is an error naming the file, never silently replaced."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read gossip keys from {path}: {exc.__class__.__name__}",
            hint=f"fix or delete {path} (deleting makes new keys; a running cluster then needs them rotated in)",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object of keys", hint=f"fix or delete {path}")
    return GossipKeys(consul=_check_key(data.get("consul"), "consul", path), nomad=_check_key(data.get("nomad"), "nomad", path))


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_new(path: Path, keys: GossipKeys) -> bool:
    """Create `path` with mode 0600 if it does not exist yet; False when another run made it first."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"consul": keys.consul, "nomad": keys.nomad}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic and refuses to replace: two runs at once agree on one key set
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create(settings: Settings) -> GossipKeys:
    """The cluster's keys: read from secrets/<cluster>/ if present, else generated once and stored there."""
    path = key_path(settings)
    _private_dir(settings.secrets_dir.parent)
    _private_dir(settings.secrets_dir)
    if not path.exists():
        _write_new(path, generate())
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # a copy restored with a loose mode is tightened, not rejected
    return load(path)


PUBLIC_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")


def ssh_public_key(settings: Settings) -> str:
    """cluster.ssh_public_key's text, refused unless it is an OpenSSH public key (never a private key sent to OCI)."""
    path = settings.cluster.ssh_public_key.expanduser()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(
            f"setting cluster.ssh_public_key = {path}: cannot read it ({reason})",
            hint="create a key with 'ssh-keygen -t ed25519' or point the setting at your public key",
        ) from None
    if not key.startswith(PUBLIC_KEY_PREFIXES):
        raise ConfigError(
            f"setting cluster.ssh_public_key = {path} is not an OpenSSH public key",
            hint="point it at the .pub file (e.g. ~/.ssh/id_ed25519.pub), never at the private key",
        )
    return key
