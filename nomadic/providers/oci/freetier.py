"""The Always Free guard: refuse a launch that would leave the free tier, counting what the tenancy already runs."""

from __future__ import annotations

from typing import Any

from ...config import FREE_TIER_SHAPE, Settings
from ...errors import CloudError, LimitExceeded
from ...plan import Node
from ..base import GONE_STATES
from .api import Api

FREE_MICRO_INSTANCES = 2
FREE_STORAGE_GB = 200
FREE_A1_OCPUS = 4.0
FREE_A1_MEMORY_GB = 24.0
A1_SHAPE = "VM.Standard.A1.Flex"
VOLUME_GONE = ("TERMINATING", "TERMINATED")


def _compartments(api: Api, settings: Settings, notes: list[str]) -> list[str]:
    tenancy = api.session.tenancy_id
    try:
        subtree = api.list(
            "list compartments", api.identity.list_compartments, tenancy,
            compartment_id_in_subtree=True, access_level="ACCESSIBLE", lifecycle_state="ACTIVE",
        )
    except CloudError:
        notes.append("cannot list the tenancy's compartments: the Always Free check counts only oci.compartment_id")
        return [settings.oci.compartment_id]
    ids = [tenancy] + [c.id for c in subtree]
    if settings.oci.compartment_id not in ids:
        ids.append(settings.oci.compartment_id)
    return ids


def _usage(api: Api, settings: Settings, notes: list[str]) -> tuple[list[Any], int]:
    """(live instances, GB of boot and block volumes) over every compartment we can see."""
    live: list[Any] = []
    storage_gb = 0
    for comp in _compartments(api, settings, notes):
        live += [i for i in api.list("list instances", api.compute.list_instances, comp) if i.lifecycle_state not in GONE_STATES]
        for bv in api.list("list boot volumes", api.blockstorage.list_boot_volumes, compartment_id=comp):
            storage_gb += int(bv.size_in_gbs or 0) if bv.lifecycle_state not in VOLUME_GONE else 0
        for vol in api.list("list block volumes", api.blockstorage.list_volumes, compartment_id=comp):
            storage_gb += int(vol.size_in_gbs or 0) if vol.lifecycle_state not in VOLUME_GONE else 0
    return live, storage_gb


def guard(api: Api, settings: Settings, nodes: list[Node], notes: list[str]) -> None:
    o = settings.oci
    if o.allow_paid or not nodes:
        return
    if o.shape not in (FREE_TIER_SHAPE, A1_SHAPE):
        raise LimitExceeded(f"shape {o.shape} is not in the Always Free tier", hint=f"use {FREE_TIER_SHAPE} or pass --allow-paid")
    live, storage_gb = _usage(api, settings, notes)
    new = len(nodes)
    if o.shape == FREE_TIER_SHAPE:
        micro = [i for i in live if i.shape == FREE_TIER_SHAPE]
        if len(micro) + new > FREE_MICRO_INSTANCES:
            names = ", ".join(sorted(i.display_name for i in micro)) or "none"
            raise LimitExceeded(
                f"Always Free allows {FREE_MICRO_INSTANCES} {FREE_TIER_SHAPE} per tenancy: "
                f"{len(micro)} exist ({names}) and this launch adds {new}",
                hint="lower --count, destroy unused instances, or pass --allow-paid",
            )
    else:
        a1 = [i for i in live if i.shape == A1_SHAPE]
        ocpus = sum(float(getattr(i.shape_config, "ocpus", 0) or 0) for i in a1) + new * o.ocpus
        memory = sum(float(getattr(i.shape_config, "memory_in_gbs", 0) or 0) for i in a1) + new * o.memory_gb
        if ocpus > FREE_A1_OCPUS or memory > FREE_A1_MEMORY_GB:
            raise LimitExceeded(
                f"Always Free allows {FREE_A1_OCPUS:g} OCPUs and {FREE_A1_MEMORY_GB:g} GB of {A1_SHAPE} in total: "
                f"this launch would make {ocpus:g} OCPUs and {memory:g} GB",
                hint="lower --count, oci.ocpus or oci.memory_gb, or pass --allow-paid",
            )
    added = new * o.boot_volume_gb
    if storage_gb + added > FREE_STORAGE_GB:
        raise LimitExceeded(
            f"Always Free allows {FREE_STORAGE_GB} GB of block and boot volumes in total: "
            f"{storage_gb} GB exist and this launch adds {added} GB ({new} x oci.boot_volume_gb = {o.boot_volume_gb})",
            hint="lower --count or oci.boot_volume_gb, delete unused volumes, or pass --allow-paid",
        )
