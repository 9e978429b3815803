"""Where nodes run: one interface (base.Provider), one implementation per config.Provider."""

from __future__ import annotations

from ..config import Provider as ProviderKind, Settings
from .base import Provider


def get(settings: Settings) -> Provider:
    """The provider the settings name; imports its module (and SDK) only now, to keep `invoke --list` fast."""
    if settings.cluster.provider is ProviderKind.OCI:
        from .oci import OciProvider

        return OciProvider(settings)
    from .local import LocalProvider

    return LocalProvider(settings)
