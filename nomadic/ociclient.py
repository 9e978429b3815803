"""OCI SDK clients built from Settings: API-key profile or instance principal, one optional endpoint override.

The `oci` package is imported inside these functions only, so that `invoke --list` never pays for it.
"""

from __future__ import annotations

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
        return Session({"region": o.region or signer.region}, signer, signer.tenancy_id, o.endpoint)

    from . import ociconfig

    profile = ociconfig.read_profile(settings)
    where = f"OCI config file {profile.path}, profile {profile.name}"
    config: dict[str, Any] = dict(profile.values)
    config["key_file"] = str(profile.key_file)
    if o.region:
        config["region"] = o.region
    try:
        signer = oci.signer.Signer(
            tenancy=config["tenancy"],
            user=config["user"],
            fingerprint=config["fingerprint"],
            private_key_file_location=None,
            pass_phrase=config.get("pass_phrase"),
            private_key_content=profile.key_pem,
        )
    except Exception as exc:  # an encrypted key without (or with the wrong) pass_phrase, or not a key at all
        raise ConfigError(
            f"{where}: the API signing key {profile.key_file} cannot be loaded ({type(exc).__name__})",
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


def objectstorage(s: Session, retry: bool = True) -> Any:
    import oci

    return oci.object_storage.ObjectStorageClient(s.config, **_kwargs(s, retry))


def workrequests(s: Session, retry: bool = True) -> Any:
    """Core Services work requests (image import progress and its errors)."""
    import oci

    return oci.work_requests.WorkRequestClient(s.config, **_kwargs(s, retry))
