"""The cluster's gossip encryption keys: made once, kept in secrets/<cluster>/ (0600), reused, never shown."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from . import files
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
    hint = f"fix or delete {path} (deleting makes new keys; a running cluster then needs them rotated in)"
    text = files.read_text(path, "gossip key file", hint, limit=files.KEY_LIMIT)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"gossip key file {path} is not JSON (line {exc.lineno})", hint=hint) from None
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


def planned(settings: Settings) -> tuple[GossipKeys, bool]:
    """The cluster's keys without writing anything: (stored keys, False), or (fresh keys, True) to store later."""
    path = key_path(settings)
    if os.path.lexists(path):
        return load(path), False
    return generate(), True


def store(settings: Settings, keys: GossipKeys) -> GossipKeys:
    """Keep `keys` in secrets/<cluster>/ (0600) unless a run at the same time stored its own first: those win."""
    path = key_path(settings)
    _private_dir(settings.secrets_dir.parent)
    _private_dir(settings.secrets_dir)
    if not path.exists() and _write_new(path, keys):
        return keys
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # a copy restored with a loose mode is tightened, not rejected
    return load(path)


def forget_new(settings: Settings) -> None:
    """Undo `store` of keys that no node has received (a launch refused before it created anything)."""
    key_path(settings).unlink(missing_ok=True)
    for folder in (settings.secrets_dir, settings.secrets_dir.parent):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty: other clusters' keys stay


def load_or_create(settings: Settings) -> GossipKeys:
    """The cluster's keys: read from secrets/<cluster>/ if present, else generated once and stored there."""
    return store(settings, planned(settings)[0])


# The key types OpenSSH accepts in authorized_keys today (ssh-dss is disabled since OpenSSH 7.0).
PUBLIC_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
PUBLIC_KEY_HINT = "point it at the .pub file (e.g. ~/.ssh/id_ed25519.pub) holding one key line, never at the private key"


def _blob_type(blob: bytes) -> str | None:
    """The key type an SSH wire-format key blob starts with (uint32 length, then the name), or None."""
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    if size > 64 or len(blob) < 4 + size + 4:  # a name, then at least one more field
        return None
    try:
        return blob[4 : 4 + size].decode("ascii")
    except UnicodeDecodeError:
        return None


def public_key_problem(text: str) -> str | None:
    """Why `text` is not exactly one OpenSSH public key line (type, base64 key blob of that type, comment)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        return f"it holds {len(lines)} lines; it must hold exactly one public key line"
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or parts[0] not in PUBLIC_KEY_TYPES:
        return "it does not start with a known OpenSSH key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-...)"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "its key is not base64"
    if _blob_type(blob) != parts[0]:
        return f"its key data is not an {parts[0]} key"
    if len(parts) == 3 and not parts[2].isprintable():
        return "its comment has control characters"
    return None


def ssh_public_key(settings: Settings) -> str:
    """cluster.ssh_public_key's one key line, refused unless it is exactly an OpenSSH public key.

    Whatever is accepted here goes into instance metadata and the local seed, so nothing else may pass: not a
    private key, not a public key line with anything after it.
    """
    path = settings.cluster.ssh_public_key.expanduser()
    what = "setting cluster.ssh_public_key ="
    text = files.read_text(path, what, "create a key with 'ssh-keygen -t ed25519' or point the setting at your .pub file",
                           limit=files.KEY_LIMIT)
    problem = public_key_problem(text)
    if problem:
        raise ConfigError(f"{what} {path} is not an OpenSSH public key: {problem}", hint=PUBLIC_KEY_HINT)
    return " ".join(text.strip().split(None, 2))
