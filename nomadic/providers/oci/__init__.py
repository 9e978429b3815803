"""The OCI provider: instances launched with the oci SDK, in modules per concern (see README, Development)."""

from .provider import TAG_CLUSTER, TAG_NODE, TAG_ROLE, OciProvider, retry_token

__all__ = ["TAG_CLUSTER", "TAG_NODE", "TAG_ROLE", "OciProvider", "retry_token"]
