"""The base image build-image --target oci bakes on, resolved before Packer launches anything.

In order: the image definition's oci.base_image_ocid; else the image `invoke import-image --source almalinux`
recorded; else the newest AVAILABLE image in the compartment matching the definition's filter (operating system,
version, display-name regex); else one error naming both ways to get one and the setting to fill in.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from . import artifacts
from .config import Settings
from .errors import ConfigError
from .imagedef import ImageDef
from .providers.oci.api import Api, Refused  # the one seam for OCI SDK calls (retries, error mapping)


@dataclass(frozen=True)
class BaseImage:
    image_id: str
    display_name: str
    how: str  # which rule found it, for the log line


def _get(api: Api, image_id: str) -> Any | None:
    try:
        return api.call(f"looking up the OCI base image {image_id}", api.compute.get_image, image_id)
    except Refused as exc:
        if exc.status == 404:
            return None
        raise


def resolve(settings: Settings, image: ImageDef) -> BaseImage:
    api = Api(settings)
    compartment = settings.oci.compartment_id or api.session.tenancy_id
    base = image.oci
    if base.base_image_ocid:
        found = _get(api, base.base_image_ocid)
        if found is None:
            raise ConfigError(
                f"{image.path}: OCI base image {base.base_image_ocid} not found (or not visible to this user)",
                hint="check oci.base_image_ocid and the region (oci.region or the profile's)",
            )
        return BaseImage(found.id, found.display_name, "oci.base_image_ocid")
    recorded = (artifacts.lookup_base(settings, image.name) or {}).get("image_id")
    if recorded:
        found = _get(api, recorded)
        if found is not None and found.lifecycle_state == "AVAILABLE":
            return BaseImage(found.id, found.display_name, f"imported by import-image ({artifacts.path(settings)})")
        print(f"warning: the base image import-image recorded, {recorded}, is gone; using the filter", file=sys.stderr)
    kwargs = {"lifecycle_state": "AVAILABLE", "sort_by": "TIMECREATED", "sort_order": "DESC"}
    if base.operating_system:
        kwargs["operating_system"] = base.operating_system
    if base.operating_system_version:
        kwargs["operating_system_version"] = base.operating_system_version
    images = api.list("looking up the OCI base image", api.compute.list_images, compartment, **kwargs)
    pattern = re.compile(base.display_name_search) if base.display_name_search else None
    matches = [
        i for i in images
        if (not base.operating_system or i.operating_system == base.operating_system)
        and (not base.operating_system_version or i.operating_system_version == base.operating_system_version)
        and (pattern is None or pattern.search(i.display_name or ""))
        and i.lifecycle_state == "AVAILABLE"
    ]
    if not matches:
        wanted = " ".join(filter(None, [base.operating_system, base.operating_system_version]))
        named = f" named like {base.display_name_search!r}" if pattern else ""
        raise ConfigError(
            f"{image.path}: no OCI base image found for {wanted or 'the filter'}{named} in compartment {compartment}, "
            "none recorded by import-image, and oci.base_image_ocid is empty",
            hint="import AlmaLinux's own OCI image with `invoke import-image --source almalinux` (the filter then finds "
            "it), or accept the AlmaLinux OS 9 listing in the OCI console's Marketplace and put its image OCID in "
            f"oci.base_image_ocid of {image.path}",
        )
    return BaseImage(matches[0].id, matches[0].display_name, "newest match of oci.base_image_filter")
