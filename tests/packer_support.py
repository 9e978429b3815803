"""Helpers for the image-build tests: a throwaway OCI config with a fresh RSA key, and tools that CI must have."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent


def missing(what: str) -> None:
    """Something a test needs is not installed: skip locally, fail in CI (env CI=true)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (bin/setup --test installs it)")
    pytest.skip(f"{what} not installed")


def require_tool(name: str) -> str:
    """Path of a tool the test drives; skip locally when absent, fail in CI."""
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv" / "bin"))
    if not found:
        missing(name)
    return str(found)


def make_oci_config(directory: Path, profile: str = "DEFAULT", pkcs1: bool = True) -> Path:
    """An OCI SDK config whose profile points at a freshly generated RSA key (never a real account).

    PKCS#1 by default: Packer 1.6.6's OCI SDK reads only 'BEGIN RSA PRIVATE KEY'.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    key_path = directory / "oci_api_key.pem"
    key_path.write_bytes(pem)
    key_path.chmod(0o600)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.md5(der).hexdigest()  # OCI's key fingerprint is MD5 of the DER public key, by definition
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
    fake = base64.b32encode(os.urandom(10)).decode().lower()
    config = directory / "config"
    config.write_text(
        f"[{profile}]\n"
        f"user=ocid1.user.oc1..aaaa{fake}\n"
        f"fingerprint={fingerprint}\n"
        f"key_file={key_path}\n"
        f"tenancy=ocid1.tenancy.oc1..aaaa{fake}\n"
        "region=eu-frankfurt-1\n"
    )
    return config


# OCI settings a build needs besides the config file (fake but well-formed).
OCI_ENV = {
    "INVOKE_OCI_SUBNET_ID": "ocid1.subnet.oc1.eu-frankfurt-1.aaaaaaaatestsubnet",
    "INVOKE_OCI_COMPARTMENT_ID": "ocid1.compartment.oc1..aaaaaaaatestcompartment",
    "INVOKE_OCI_AVAILABILITY_DOMAINS": "Uocm:EU-FRANKFURT-1-AD-1",
}
