"""Gossip keys: made once per cluster, stored 0600 in a 0700 folder, reused, checked, never shown."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from nomadic import config, keys
from nomadic.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_created_private_and_well_formed(settings: config.Settings):
    made = keys.load_or_create(settings)
    path = keys.key_path(settings)
    assert path == settings.root / "secrets" / settings.cluster.name / keys.KEY_FILE
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert len(base64.b64decode(made.consul, validate=True)) == 32
    assert len(base64.b64decode(made.nomad, validate=True)) == 32
    assert made.consul != made.nomad
    assert json.loads(path.read_text()) == {"consul": made.consul, "nomad": made.nomad}


def test_keys_are_reused_on_later_runs(settings: config.Settings):
    first = keys.load_or_create(settings)
    before = keys.key_path(settings).read_bytes()
    assert keys.load_or_create(settings) == first
    assert keys.key_path(settings).read_bytes() == before


def test_each_cluster_has_its_own_keys(tmp_path: Path):
    a = keys.load_or_create(config.load({"cluster": {"name": "alpha"}}, tmp_path))
    b = keys.load_or_create(config.load({"cluster": {"name": "beta"}}, tmp_path))
    assert a.consul != b.consul and a.nomad != b.nomad


def test_a_loose_mode_is_tightened(settings: config.Settings):
    keys.load_or_create(settings)
    path = keys.key_path(settings)
    path.chmod(0o644)
    path.parent.chmod(0o755)
    keys.load_or_create(settings)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "is not JSON"),
        ("[]", "not a JSON object"),
        ('{"consul": "QUJD", "nomad": "QUJD"}', "is 3 bytes, not 32"),
        ('{"consul": "!!!not base64!!!", "nomad": "x"}', "not base64"),
        ('{"nomad": "x"}', "'consul' is missing"),
    ],
)
def test_a_broken_key_file_is_an_error_and_is_left_alone(settings: config.Settings, content, fragment):
    path = keys.key_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        keys.load_or_create(settings)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_text() == content


def test_repr_never_shows_a_key():
    made = keys.generate()
    assert made.consul not in repr(made) and made.nomad not in repr(made)


# ---- the SSH public key every provider hands to the nodes -----------------------------------------------------


def _with_key(tmp_path: Path, text: str | bytes) -> config.Settings:
    key = tmp_path / "key.pub"
    key.write_bytes(text if isinstance(text, bytes) else text.encode())
    return config.load({"cluster": {"ssh_public_key": str(key)}}, tmp_path)


# An ed25519 public key line: the blob is the wire format (type name, then 32 key bytes), written out by hand.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vbWFkaWMtdW5pdC10ZXN0LW9ubHkta2V5LTMyYnl0"


def test_ssh_public_key_is_read_and_stripped(tmp_path: Path) -> None:
    assert keys.ssh_public_key(_with_key(tmp_path, f"  {ED25519}   me@host \n")) == f"{ED25519} me@host"


@pytest.mark.parametrize(
    "text, problem",
    [
        (f"{ED25519} me\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n", "holds 3 lines"),
        ("ssh-this is not a key\n", "known OpenSSH key type"),
        ("ssh-ed25519 AAAA%%%% me\n", "not base64"),
        (ED25519.replace("ssh-ed25519", "ssh-rsa") + " me\n", "not an ssh-rsa key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP me\n", "known OpenSSH key type"),
        ('command="rm -rf /" ' + ED25519 + "\n", "known OpenSSH key type"),
    ],
)
def test_only_an_exact_public_key_line_is_accepted(tmp_path: Path, text, problem) -> None:
    with pytest.raises(ConfigError) as info:
        keys.ssh_public_key(_with_key(tmp_path, text))
    message = str(info.value)
    assert problem in message and "cluster.ssh_public_key" in message and "\n" not in message
    assert "b3BlbnNzaC1rZXktdjEA" not in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n", "not an OpenSSH public key"),
        (b"\xff\xfe\x00binary", "is not UTF-8 text"),
    ],
)
def test_a_private_or_binary_key_is_refused_without_showing_it(tmp_path: Path, text, fragment) -> None:
    with pytest.raises(ConfigError) as info:
        keys.ssh_public_key(_with_key(tmp_path, text))
    message = str(info.value)
    assert fragment in message and "cluster.ssh_public_key" in message
    assert "b3BlbnNzaC1rZXktdjEA" not in message


def test_a_missing_key_names_the_setting(tmp_path: Path) -> None:
    settings = config.load({"cluster": {"ssh_public_key": str(tmp_path / "none.pub")}}, tmp_path)
    with pytest.raises(ConfigError, match="cluster.ssh_public_key"):
        keys.ssh_public_key(settings)
