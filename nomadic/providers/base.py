"""The provider seam: launch, find, and destroy a cluster's nodes, wherever they run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from ..plan import Node, Plan, Role


@dataclass(frozen=True)
class NodeStatus:
    """What a provider knows of one running (or stopping) node of the cluster."""

    name: str
    role: Role
    state: str  # the provider's lifecycle word, e.g. RUNNING, PROVISIONING, TERMINATED, stopped
    id: str  # OCI instance OCID, or the local VM's pid
    private_ip: str
    public_ip: str = ""
    ssh_host: str = ""  # where `ssh` should connect (public IP, or 127.0.0.1 for local forwards)
    ssh_port: int = 22
    ssh_user: str = ""


# Progress reports: (node name, message); the caller prints them, one line per event.
Progress = Callable[[str, str], None]


# Lifecycle words meaning "on its way out": such a node no longer counts as existing for launch.
GONE_STATES = frozenset({"TERMINATING", "TERMINATED"})

# Lifecycle words meaning "exists, but halted": launch starts such a node again (Oracle stops idle Always Free
# instances; a local VM whose qemu exited is STOPPED too).
STOPPED_STATES = frozenset({"STOPPED"})

# Lifecycle words meaning "on its way up": a rerun of launch waits for such a node (through Provider.start).
COMING_STATES = frozenset({"PROVISIONING", "STARTING"})


class Provider(Protocol):
    def preflight(self, image: str | None) -> Any:
        """Check settings, credentials, network and image before anything is created; return what launch needs.

        The result (the image to launch, or a provider's launch context) is passed to `launch` unchanged.
        `image` is what the user passed (--image-id / --image) or None for the one build-image recorded.
        Raises a NomadicError (one line, nothing created) for any problem.
        """
        ...

    def find(self) -> list[NodeStatus]:
        """The cluster's nodes that exist now (found by tag or by local record), any state but terminated."""
        ...

    def used_addresses(self) -> set[str]:
        """Addresses in the cluster network taken by anything that is not one of this cluster's nodes."""
        ...

    def launch(
        self, plan: Plan, nodes: list[Node], user_data: Mapping[str, str], image: Any, progress: Progress
    ) -> list[NodeStatus]:
        """Create `nodes` (the missing part of `plan`), user_data by node name; `image` is what preflight returned;
        return them once running."""
        ...

    def ensure_network(self, prepared: Any, progress: Progress) -> None:
        """Make the cluster's network admit what the nodes need (OCI: its network security group, on every node);
        `prepared` is what preflight returned. Called by every launch, also when nothing is missing."""
        ...

    def start(self, nodes: list[NodeStatus], progress: Progress) -> list[NodeStatus]:
        """Start these existing, stopped nodes (and wait for those still coming up); return them once running."""
        ...

    def destroy(self, nodes: list[NodeStatus], progress: Progress) -> None:
        """Terminate exactly these nodes and wait until they are gone."""
        ...
