"""Placement of one node: ADs and fault domains in rounds against "out of host capacity", retry tokens, waiting.

Retry tokens are unique to one creation attempt: sha256(cluster, launch nonce, node, attempt). The nonce is kept
with the cluster's records (build/<cluster>/oci-launch-nonce): a rerun after a crash reuses it, so a request
whose answer was lost replays its instance instead of making a twin; `destroy` removes it, so a relaunch never
resends a token whose instance was terminated. Should OCI still answer 409 InvalidatedRetryToken (token used
with other details, or its instance terminated) or replay a terminated instance (OCI may, within 24 hours),
placement checks by tag that no live instance of the node exists and moves on to the next attempt's token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ... import fsutil
from ...config import Settings, is_flex
from ...errors import CapacityError, CloudError
from ...plan import Node
from ..base import GONE_STATES, Progress
from .api import Api, OutOfCapacity, TokenInvalidated
from .preflight import LaunchContext

TAG_CLUSTER = "nomadic-cluster"
TAG_NODE = "nomadic-node"
TAG_ROLE = "nomadic-role"
TAG_ADDRESS = "nomadic-address"  # the planned private IP, known before the VNIC is
NONCE_FILE = "oci-launch-nonce"
REPLAY_LIMIT = 5  # tokens in a row that replay a terminated instance or are invalidated, before giving up
WAIT_DONE = ("RUNNING", "STOPPING", "STOPPED", "TERMINATING", "TERMINATED")


def retry_token(cluster: str, node: str, attempt: int, nonce: str = "") -> str:
    """Per cluster, launch nonce, node and attempt: a resent request returns the same instance, never a twin."""
    digest = hashlib.sha256(f"{cluster}\0{nonce}\0{node}\0{attempt}".encode()).hexdigest()
    return f"nomadic-{digest[:48]}"


def launch_nonce(settings: Settings) -> str:
    """This cluster's launch nonce: the recorded one (a rerun after a crash), else a new one, recorded first."""
    path = settings.cluster_dir / NONCE_FILE
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    path.parent.mkdir(parents=True, exist_ok=True)
    nonce = secrets.token_hex(16)
    fsutil.write_text_atomic(path, nonce + "\n")
    return nonce


def forget_nonce(settings: Settings) -> None:
    (settings.cluster_dir / NONCE_FILE).unlink(missing_ok=True)


class WaitTimeout(CloudError):
    """An instance did not reach the wanted state within oci.launch_timeout_s."""


@dataclass
class Attempt:
    """What is known of one node's launch so far (for the report after a failure)."""

    node: Node
    instance_id: str = ""
    state: str = ""


def details(settings: Settings, ctx: LaunchContext, node: Node, metadata: dict[str, str], ad: str,
            fd: str | None, nsg_ids: list[str]) -> Any:
    import oci

    o = settings.oci
    m = oci.core.models
    shape_config = m.LaunchInstanceShapeConfigDetails(ocpus=o.ocpus, memory_in_gbs=o.memory_gb) if is_flex(o.shape) else None
    return m.LaunchInstanceDetails(
        compartment_id=o.compartment_id, availability_domain=ad, fault_domain=fd, display_name=node.name,
        shape=o.shape, shape_config=shape_config, metadata=metadata,
        freeform_tags={TAG_CLUSTER: settings.cluster.name, TAG_NODE: node.name, TAG_ROLE: node.role.value,
                       TAG_ADDRESS: node.address},
        source_details=m.InstanceSourceViaImageDetails(image_id=ctx.image, boot_volume_size_in_gbs=o.boot_volume_gb),
        create_vnic_details=m.CreateVnicDetails(
            subnet_id=o.subnet_id, private_ip=node.address,
            hostname_label=node.hostname if ctx.hostname_labels else None,
            assign_public_ip=ctx.assign_public_ip, display_name=node.name, nsg_ids=nsg_ids or None,
        ),
    )


def live_instance_of(api: Api, settings: Settings, node: str) -> Any | None:
    """This cluster's live instance of `node`, found by tag (after a token was invalidated or replayed)."""
    for inst in api.list("list instances", api.compute.list_instances, settings.oci.compartment_id):
        tags = inst.freeform_tags or {}
        if tags.get(TAG_CLUSTER) == settings.cluster.name and tags.get(TAG_NODE) == node and inst.lifecycle_state not in GONE_STATES:
            return inst
    return None


def launch_one(api: Api, settings: Settings, ctx: LaunchContext, node: Node, metadata: dict[str, str],
               nsg_ids: list[str], nonce: str, progress: Progress, out: Attempt) -> Any:
    """Create the node's instance somewhere with capacity; return it (not yet RUNNING)."""
    o = settings.oci
    placements = [(ad, fd) for ad in ctx.ads for fd in (o.fault_domains or (None,))]
    attempt, rounds = 0, max(1, o.capacity_rounds)
    for rnd in range(rounds):
        for ad, fd in placements:
            where = ad + (f"/{fd}" if fd else "")
            body = details(settings, ctx, node, metadata, ad, fd, nsg_ids)
            for _ in range(REPLAY_LIMIT):
                token = retry_token(settings.cluster.name, node.name, attempt, nonce)
                attempt += 1
                try:
                    inst = api.call(f"{node.name}: launch", api.compute.launch_instance, body, opc_retry_token=token,
                                    say=lambda text: progress(node.name, text), placement=True)
                except OutOfCapacity:
                    progress(node.name, f"out of host capacity in {where}")
                    break
                except TokenInvalidated as exc:
                    inst = live_instance_of(api, settings, node.name)
                    if inst is None:
                        progress(node.name, f"retry token invalidated ({exc}); trying the next one")
                        continue
                if inst.lifecycle_state in GONE_STATES:
                    continue  # OCI replayed an instance terminated earlier: send a fresh token
                out.instance_id, out.state = inst.id, inst.lifecycle_state
                progress(node.name, f"launched {inst.id} in {where} at {node.address}: {inst.lifecycle_state}")
                return inst
            else:
                raise CloudError(f"{node.name}: {REPLAY_LIMIT} retry tokens in a row were invalidated or replayed terminated instances")
        if rnd + 1 < rounds:
            delay = api.backoff(rnd)
            progress(node.name, f"no host capacity in {', '.join(ctx.ads)} (round {rnd + 1}/{rounds}); retrying in {delay:.0f}s")
            api.pause(delay)
    raise CapacityError(
        f"{node.name}: out of host capacity for {o.shape} in {', '.join(ctx.ads)} after {rounds} rounds",
        hint="try later, another region, or raise oci.capacity_rounds",
    )


def wait_state(api: Api, settings: Settings, instance_id: str, name: str, done: tuple[str, ...], progress: Progress,
               out: Attempt | None = None) -> Any:
    """Poll GetInstance (through the seam: 429s are retried) until one of `done`; the instance then."""
    o = settings.oci
    deadline = time.monotonic() + o.launch_timeout_s
    say = lambda text: progress(name, text)  # noqa: E731
    inst = api.call(f"{name}: get instance", api.compute.get_instance, instance_id, say=say)
    last = inst.lifecycle_state
    while inst.lifecycle_state not in done:
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"{name}: not {done[0]} after {o.launch_timeout_s:.0f}s (last state {last}); it exists as {instance_id}",
                hint="rerun the command to wait again, or raise oci.launch_timeout_s",
            )
        api.poll_pause(max(0.2, o.poll_interval_s))
        inst = api.call(f"{name}: get instance", api.compute.get_instance, instance_id, say=say)
        if out is not None:
            out.state = inst.lifecycle_state
        if inst.lifecycle_state != last:
            last = inst.lifecycle_state
            progress(name, last)
    return inst
