"""A local OCI API emulator (loopback HTTP) for the calls nomadic makes, with lifecycle progression and faults."""

from .server import Emulator, Fault, write_oci_config

__all__ = ["Emulator", "Fault", "write_oci_config"]
