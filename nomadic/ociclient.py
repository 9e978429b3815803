"""OCI SDK clients built from Settings: API-key profile or instance principal, one optional endpoint override.

The `oci` package is imported inside these functions only, so that `invoke --list` never pays for it.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from typing import Any

from .config import Auth, Settings
from .errors import ConfigError

# Transport timeouts (connect, read) for every client, in seconds: a dead endpoint is known within seconds.
TIMEOUT = (5.0, 60.0)


@dataclass(frozen=True)
class Session:
    """Credentials resolved once; clients are made from it per thread (SDK clients share a requests session)."""

    config: dict[str, Any]
    signer: Any
    tenancy_id: str
    endpoint: str


def _profiles(path: str) -> list[str]:
    parser = configparser.ConfigParser(default_section="\0")
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return []
    return parser.sections()  # with default_section "\0", a [DEFAULT] profile is an ordinary section


def session(settings: Settings) -> Session:
    """Read the profile (or instance principal) and build the signer; every problem is a one-line ConfigError."""
    import oci

    o = settings.oci
    if o.auth is Auth.INSTANCE_PRINCIPAL:
        try:
            signer = oci.auth.signers.InstancePrincipalsSecurityTokenSigner()
        except Exception as exc:  # the metadata service answers only on an OCI instance
            raise ConfigError(
                f"instance principal authentication failed ({type(exc).__name__})",
                hint="set oci.auth = api_key unless this runs on an OCI instance in a dynamic group with a policy",
            ) from None
        config = {"region": o.region or signer.region}
        return Session(config, signer, signer.tenancy_id, o.endpoint)

    path = o.config_file.expanduser()
    where = f"OCI config file {path}, profile {o.profile}"
    if not path.is_file():
        raise ConfigError(
            f"{where}: the file does not exist",
            hint="create it with 'oci setup config', or set oci.config_file (INVOKE_OCI_CONFIG_FILE)",
        )
    try:
        config = oci.config.from_file(str(path), o.profile)
    except oci.exceptions.ProfileNotFound:
        known = ", ".join(_profiles(str(path))) or "none"
        raise ConfigError(
            f"{where}: the profile is not in the file (profiles there: {known})",
            hint="set oci.profile (INVOKE_OCI_PROFILE) to one of them",
        ) from None
    except oci.exceptions.InvalidConfig as exc:
        raise ConfigError(f"{where} is incomplete: {exc}", hint="'oci setup config' writes a complete profile") from None
    except Exception as exc:  # unreadable or not an INI file; its text can quote key material, so only its kind
        raise ConfigError(
            f"{where} cannot be read ({type(exc).__name__})", hint="check the file's format and permissions"
        ) from None
    if o.region:
        config["region"] = o.region
    try:
        signer = oci.signer.Signer(
            tenancy=config["tenancy"],
            user=config["user"],
            fingerprint=config["fingerprint"],
            private_key_file_location=config.get("key_file"),
            pass_phrase=oci.config.get_config_value_or_default(config, "pass_phrase"),
            private_key_content=config.get("key_content"),
        )
    except Exception as exc:  # missing or encrypted key file, wrong passphrase
        raise ConfigError(
            f"{where}: the API signing key {config.get('key_file')} cannot be loaded ({type(exc).__name__})",
            hint="fix key_file (and pass_phrase) in that profile",
        ) from None
    return Session(config, signer, config["tenancy"], o.endpoint)


def _kwargs(s: Session, retry: bool) -> dict[str, Any]:
    import oci

    kwargs: dict[str, Any] = {
        "signer": s.signer,
        "timeout": TIMEOUT,
        # We bound our own retries; the SDK's breaker would turn a burst of capacity errors into odd failures.
        "circuit_breaker_strategy": oci.circuit_breaker.NoCircuitBreakerStrategy(),
    }
    if not retry:
        kwargs["retry_strategy"] = oci.retry.NoneRetryStrategy()
    if s.endpoint:
        kwargs["service_endpoint"] = s.endpoint.rstrip("/")
    return kwargs


def compute(s: Session, retry: bool = True) -> Any:
    """ComputeClient; retry=False leaves retries to the caller (the OCI provider's seam, providers/oci/api.py)."""
    import oci

    return oci.core.ComputeClient(s.config, **_kwargs(s, retry))


def network(s: Session, retry: bool = True) -> Any:
    import oci

    return oci.core.VirtualNetworkClient(s.config, **_kwargs(s, retry))


def identity(s: Session, retry: bool = True) -> Any:
    import oci

    return oci.identity.IdentityClient(s.config, **_kwargs(s, retry))


def blockstorage(s: Session, retry: bool = True) -> Any:
    import oci

    return oci.core.BlockstorageClient(s.config, **_kwargs(s, retry))
