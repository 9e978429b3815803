"""OCI provider: launch, find, start and terminate a cluster's instances, behind its network security group.

Every SDK call goes through the seam in api.py; preflight.py checks before anything is created, placement.py
places one node, freetier.py guards the Always Free tier, nsg.py keeps the cluster's network security group.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping

from ... import nodeconfig
from ...config import Settings
from ...errors import CapacityError, CloudError, Interrupted, LimitExceeded, NomadicError
from ...plan import Node, Plan, Role
from ..base import GONE_STATES, NodeStatus, Progress
from . import freetier, nsg, placement, preflight
from .api import Api, Outcome, Refused, fan_out
from .placement import TAG_ADDRESS, TAG_CLUSTER, TAG_NODE, TAG_ROLE, Attempt, WaitTimeout, retry_token
from .preflight import LaunchContext

__all__ = ["OciProvider", "TAG_CLUSTER", "TAG_NODE", "TAG_ROLE", "retry_token"]

START_DONE = ("RUNNING", "TERMINATING", "TERMINATED")  # a STOPPED answer just after START is the old state
ATTACHED = ("ATTACHING", "ATTACHED")


class OciProvider:
    """One cluster's instances in one compartment and subnet."""

    def __init__(
        self, settings: Settings, sleep: Callable[[float], None] | None = None, rand: Callable[[], float] = random.random
    ) -> None:
        """`sleep` replaces the backoff waits (tests); by default they are waits that Ctrl-C or an abort cut short."""
        self.settings = settings
        self.api = Api(settings, sleep=sleep, rand=rand)
        self._found: list[NodeStatus] | None = None
        self._vnics: dict[str, str] = {}  # instance id -> primary VNIC id, from find()
        self._group_ids: list[str] | None = None  # the cluster's NSGs, once ensured
        self.notes: list[str] = []  # remarks for the user (printed by the caller)

    @property
    def session(self) -> Any:
        return self.api.session

    @property
    def vnics(self) -> dict[str, str]:
        """Instance id -> primary VNIC id, as the last find() saw them."""
        return dict(self._vnics)

    # ---- preflight ----------------------------------------------------------------------------------------------
    def preflight(self, image: str | None) -> LaunchContext:
        """Check everything that can be checked before a create, including foreign holders of our hostname labels."""
        ctx = preflight.run(self.api, self.settings, image)
        self.notes += ctx.notes
        if ctx.hostname_labels:
            self.find()
            held = preflight.foreign_labels(self.api, self.settings, set(self._vnics.values()))
            preflight.refuse_foreign_labels(held, self.settings)
        return ctx

    # ---- find ---------------------------------------------------------------------------------------------------
    def find(self) -> list[NodeStatus]:
        compartment = preflight.require(self.settings, "compartment_id")
        api, name = self.api, self.settings.cluster.name
        instances = [
            i for i in api.list("list instances", api.compute.list_instances, compartment)
            if (i.freeform_tags or {}).get(TAG_CLUSTER) == name and i.lifecycle_state != "TERMINATED"
        ]
        vnics: dict[str, str] = {}
        if instances:
            for att in api.list("list VNIC attachments", api.compute.list_vnic_attachments, compartment):
                if att.lifecycle_state in ATTACHED and att.instance_id not in vnics:
                    vnics[att.instance_id] = att.vnic_id
        self._vnics = vnics
        ordered = sorted(instances, key=lambda i: ((i.freeform_tags or {}).get(TAG_NODE, ""), i.time_created))
        self._found = [self._status(inst, vnics.get(inst.id)) for inst in ordered]
        return self._found

    def _status(self, inst: Any, vnic_id: str | None, say: Callable[[str], None] | None = None) -> NodeStatus:
        tags = inst.freeform_tags or {}
        private_ip, public_ip = tags.get(TAG_ADDRESS, ""), ""
        if vnic_id:
            vnic = self.api.call(f"VNIC of {inst.display_name}", self.api.network.get_vnic, vnic_id, say=say)
            private_ip, public_ip = vnic.private_ip or private_ip, vnic.public_ip or ""
        try:
            role = Role(tags.get(TAG_ROLE, ""))
        except ValueError:
            role = Role.CLIENT
        return NodeStatus(
            name=tags.get(TAG_NODE, inst.display_name), role=role, state=inst.lifecycle_state, id=inst.id,
            private_ip=private_ip, public_ip=public_ip, ssh_host=public_ip or private_ip, ssh_port=22,
            ssh_user=self.settings.oci.ssh_user,
        )

    def used_addresses(self) -> set[str]:
        subnet_id = preflight.require(self.settings, "subnet_id")
        found = self._found if self._found is not None else self.find()
        ours = {n.private_ip for n in found if n.state not in GONE_STATES}
        taken = {p.ip_address for p in self.api.list("list private IPs", self.api.network.list_private_ips, subnet_id=subnet_id)}
        return taken - ours

    def guard_free_tier(self, nodes: list[Node]) -> None:
        freetier.guard(self.api, self.settings, nodes, self.notes)

    # ---- the network security group -----------------------------------------------------------------------------
    def ensure_network(self, prepared: Any, progress: Progress) -> None:
        ctx = prepared if isinstance(prepared, LaunchContext) else self.preflight(prepared)
        self.ensure_groups(ctx, progress)

    def ensure_groups(self, ctx: LaunchContext, progress: Progress) -> list[str]:
        """The cluster's network security group(s), created or found, and put on every node that lacks them."""
        if self._group_ids is not None:
            return self._group_ids
        o, name = self.settings.oci, self.settings.cluster.name
        nonce = placement.launch_nonce(self.settings)
        group_ids = [nsg.ensure(self.api, o.compartment_id, ctx.vcn_id, name, nsg.CLUSTER,
                                lambda attempt: retry_token(name, f"nsg-{nsg.CLUSTER.role}", attempt, nonce))]
        found = self._found if self._found is not None else self.find()
        for node in found:
            vnic = self._vnics.get(node.id)
            if vnic and node.state not in GONE_STATES and nsg.attach(self.api, vnic, group_ids, say=lambda t: progress(node.name, t)):
                progress(node.name, f"added to network security group {nsg.CLUSTER.display_name(name)}")
        self._group_ids = group_ids
        return group_ids

    # ---- launch ---------------------------------------------------------------------------------------------------
    def launch(
        self, plan: Plan, nodes: list[Node], user_data: Mapping[str, str], image: Any, progress: Progress
    ) -> list[NodeStatus]:
        """Create `nodes`; `image` is preflight's LaunchContext (or an image id: preflight runs then)."""
        if not nodes:
            return []
        ctx = image if isinstance(image, LaunchContext) else self.preflight(image)
        metadata = {n.name: nodeconfig.oci_metadata(user_data[n.name], ctx.ssh_key) for n in nodes}
        for name, md in metadata.items():
            nodeconfig.check_metadata_size(md, node=name)
        self.guard_free_tier(nodes)
        nonce = placement.launch_nonce(self.settings)
        group_ids = self.ensure_groups(ctx, progress)
        attempts = {n.name: Attempt(n) for n in nodes}

        def work(node: Node) -> NodeStatus:
            out = attempts[node.name]
            inst = placement.launch_one(self.api, self.settings, ctx, node, metadata[node.name], group_ids, nonce, progress, out)
            return self._running(inst.id, node.name, progress, out)

        try:
            outcomes = fan_out(self.api, nodes, work, "launch", stop_on=lambda e: not isinstance(e, CapacityError))
        except Interrupted:
            self._report([Outcome(n) for n in nodes], attempts, progress)
            raise Interrupted(
                "launch interrupted by Ctrl-C; the instances listed above exist",
                hint="rerun 'invoke launch' to converge, or 'invoke destroy' to remove them",
            ) from None
        if all(o.result is not None for o in outcomes):
            return [o.result for o in outcomes if o.result is not None]
        self._report(outcomes, attempts, progress)
        raise self._launch_error(outcomes)

    @staticmethod
    def _launch_error(outcomes: list[Outcome[Node, NodeStatus]]) -> NomadicError:
        failed = [o for o in outcomes if o.result is None]
        errors = [o.error for o in outcomes if o.error is not None]
        done = f"{len(outcomes) - len(failed)} of {len(outcomes)} new nodes running"
        if not errors:
            return CloudError(f"launch stopped with {len(failed)} of {len(outcomes)} nodes not running")
        first = next((e for e in errors if isinstance(e, LimitExceeded)), None) or next(
            (e for e in errors if not isinstance(e, CapacityError)), None
        ) or errors[0]
        if not isinstance(first, NomadicError):
            return CloudError(f"{type(first).__name__}: {first}; {done}")
        # Only capacity and timeouts go away by themselves; otherwise the hint says what to fix first.
        rerun = isinstance(first, (CapacityError, WaitTimeout))
        summary = f"{done}; rerun 'invoke launch' to add the missing ones" if rerun else done
        return type(first)(f"{first.message}; {summary}", hint=first.hint)

    @staticmethod
    def _report(outcomes: list[Outcome[Node, NodeStatus]], attempts: Mapping[str, Attempt], progress: Progress) -> None:
        """One line per node: what exists now (so a user knows what a rerun or destroy will meet)."""
        for o in outcomes:
            a = attempts[o.item.name]
            if o.result is not None:
                progress(a.node.name, f"exists: {o.result.state} {o.result.id}")
            elif a.instance_id:
                progress(a.node.name, f"exists: {a.state or 'state unknown'} {a.instance_id} (not yet RUNNING)")
            elif o.error is not None:
                progress(a.node.name, f"not created: {o.error}")
            else:
                progress(a.node.name, "not created: stopped after another node's error")

    def _running(self, instance_id: str, name: str, progress: Progress, out: Attempt | None = None,
                 done: tuple[str, ...] = placement.WAIT_DONE) -> NodeStatus:
        final = placement.wait_state(self.api, self.settings, instance_id, name, done, progress, out)
        if out is not None:
            out.state = final.lifecycle_state
        if final.lifecycle_state != "RUNNING":
            raise CloudError(f"{name}: instance {instance_id} became {final.lifecycle_state} instead of RUNNING")
        say = lambda text: progress(name, text)  # noqa: E731
        atts = self.api.list(f"{name}: VNIC attachments", self.api.compute.list_vnic_attachments,
                             self.settings.oci.compartment_id, instance_id=instance_id)
        vnic_id = next((a.vnic_id for a in atts if a.lifecycle_state in ATTACHED), None)
        return self._status(final, vnic_id, say=say)

    # ---- start ----------------------------------------------------------------------------------------------------
    def start(self, nodes: list[NodeStatus], progress: Progress) -> list[NodeStatus]:
        """START each stopped instance of this cluster (tag re-checked first); wait for it (and for any
        PROVISIONING or STARTING one) until it runs."""
        outcomes = fan_out(self.api, nodes, lambda n: self._start_one(n, progress), "start",
                           stop_on=lambda e: not isinstance(e, NomadicError))
        errors = [o.error for o in outcomes if o.error is not None]
        for o in outcomes:
            if o.error is not None:
                progress(o.item.name, f"not started: {getattr(o.error, 'message', o.error)}")
        if errors:
            first = errors[0]
            done = sum(1 for o in outcomes if o.result is not None)
            message = f"{getattr(first, 'message', first)}; {done} of {len(nodes)} nodes started"
            raise (type(first) if isinstance(first, NomadicError) else CloudError)(message, hint=getattr(first, "hint", None))
        return [o.result for o in outcomes if o.result is not None]

    def _start_one(self, node: NodeStatus, progress: Progress) -> NodeStatus:
        api, name = self.api, self.settings.cluster.name
        say = lambda text: progress(node.name, text)  # noqa: E731
        inst = api.call(f"{node.name}: get instance {node.id}", api.compute.get_instance, node.id, say=say)
        if (inst.freeform_tags or {}).get(TAG_CLUSTER) != name:  # never touch what is not ours
            raise CloudError(f"{node.name}: {node.id} is not tagged {TAG_CLUSTER}={name}; left alone")
        if inst.lifecycle_state == "STOPPED":
            inst = api.call(f"{node.name}: start {node.id}", api.compute.instance_action, node.id, "START", say=say)
            progress(node.name, f"START sent to {node.id}: {inst.lifecycle_state}")
        return self._running(node.id, node.name, progress, done=START_DONE)

    # ---- destroy --------------------------------------------------------------------------------------------------
    def destroy(self, nodes: list[NodeStatus], progress: Progress) -> None:
        """Terminate exactly these nodes; once none of the cluster is left, delete its network security groups."""
        outcomes = fan_out(self.api, nodes, lambda n: self._terminate_one(n, progress), "destroy",
                           stop_on=lambda e: not isinstance(e, NomadicError))
        errors = [str(o.error) for o in outcomes if o.error is not None]
        if errors:
            raise CloudError("; ".join(errors), hint="rerun 'invoke destroy' to retry")
        if not [n for n in self.find() if n.state != "TERMINATED"]:
            nsg.delete_all(self.api, self.settings.oci.compartment_id, self.settings.cluster.name,
                           lambda text: progress(self.settings.cluster.name, text))
            placement.forget_nonce(self.settings)

    def _terminate_one(self, node: NodeStatus, progress: Progress) -> None:
        api, name = self.api, self.settings.cluster.name
        say = lambda text: progress(node.name, text)  # noqa: E731
        try:
            inst = api.call(f"{node.name}: get instance {node.id}", api.compute.get_instance, node.id, say=say)
        except Refused as exc:
            if exc.status != 404:
                raise
            progress(node.name, "already gone")
            return
        if (inst.freeform_tags or {}).get(TAG_CLUSTER) != name:  # never touch what is not ours
            raise CloudError(f"{node.name}: {node.id} is not tagged {TAG_CLUSTER}={name}; left alone")
        if inst.lifecycle_state != "TERMINATED":
            api.call(f"{node.name}: terminate {node.id}", api.compute.terminate_instance, node.id,
                     preserve_boot_volume=False, say=say)
            progress(node.name, f"terminating {node.id}")
        try:
            placement.wait_state(api, self.settings, node.id, node.name, ("TERMINATED",), lambda n, t: None)
        except Refused as exc:
            if exc.status != 404:  # a terminated instance may vanish from GetInstance
                raise
        progress(node.name, "TERMINATED")
