"""The OCI config file (~/.oci/config): one reader for build-image (Packer) and the SDK session.

Read the way the OCI SDK reads it (INI, [DEFAULT] folded into every profile, key_file relative to the file),
through the guarded reader, and checked whole: the profile, its required keys, the region and the API key file.
Messages name the setting (oci.config_file, oci.profile) or the profile's key to fix; they never quote the file,
which sits next to key material.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from . import files
from .config import Settings
from .errors import ConfigError

REQUIRED = ("user", "fingerprint", "tenancy", "key_file")
FIX = (
    "create it with 'oci setup config', point oci.config_file (INVOKE_OCI_CONFIG_FILE) at yours, "
    "or set oci.auth = instance_principal on an OCI instance"
)


@dataclass(frozen=True)
class Profile:
    path: Path
    name: str
    values: dict[str, str] = field(repr=False)  # user, fingerprint, tenancy, region, key_file, pass_phrase ...
    key_file: Path
    key_pem: str = field(repr=False)

    @property
    def is_pkcs8(self) -> bool:
        return "BEGIN PRIVATE KEY" in self.key_pem or "BEGIN ENCRYPTED PRIVATE KEY" in self.key_pem


def _parse(path: Path, text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        at = f" at line {line}" if line else ""
        raise ConfigError(
            f"setting oci.config_file = {path} is not a valid INI file ({type(exc).__name__}{at})", hint=FIX
        ) from None
    return parser


def read_profile(settings: Settings) -> Profile:
    """The profile oci.profile of oci.config_file, with its API key read and checked."""
    o = settings.oci
    path = o.config_file.expanduser()
    text = files.read_text(path, "setting oci.config_file =", FIX)
    parser = _parse(path, text)
    # configparser folds [DEFAULT] into every section, exactly as the OCI SDK reads it.
    if o.profile == "DEFAULT":
        values = dict(parser.defaults())
    elif parser.has_section(o.profile):
        values = dict(parser.items(o.profile))
    else:
        values = {}
    if not values:
        known = ", ".join((["DEFAULT"] if parser.defaults() else []) + parser.sections()) or "none"
        raise ConfigError(
            f"setting oci.profile = {o.profile!r}: no such profile in {path} (profiles there: {known})",
            hint="set oci.profile (INVOKE_OCI_PROFILE) to one of them, or oci.config_file to another file",
        )
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise ConfigError(
            f"profile {o.profile!r} in {path} (setting oci.profile) lacks {', '.join(missing)}",
            hint="'oci setup config' writes a complete profile",
        )
    if not (o.region or values.get("region")):
        raise ConfigError(
            f"profile {o.profile!r} in {path} has no region and setting oci.region is empty",
            hint="add region= to the profile or set oci.region (INVOKE_OCI_REGION)",
        )
    key = Path(values["key_file"]).expanduser()
    if not key.is_absolute():
        key = path.parent / key
    hint = f"fix key_file in profile {o.profile!r} of {path} (setting oci.config_file)"
    pem = files.read_text(key, f"key_file of profile {o.profile!r}:", hint, limit=files.KEY_LIMIT)
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        raise ConfigError(
            f"key_file {key} of profile {o.profile!r} is not a PEM private key",
            hint=f"point key_file at the API signing key you uploaded to OCI ({hint})",
        )
    return Profile(path, o.profile, values, key, pem)
