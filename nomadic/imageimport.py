"""`invoke import-image`: a qcow2 (AlmaLinux's own OCI image, or our local bake) made into an OCI custom image.

Steps, each safe to rerun: get and verify the file; reuse an image already imported from the same digest (found by
its freeform tags); else upload it to a private Object Storage bucket (multipart when large) and create the image
from the object (QCOW2, paravirtualized); wait for AVAILABLE; make it compatible with oci.shape; record its OCID
where build-image (a base) or launch (a node image) looks.
"""

from __future__ import annotations

import enum
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import artifacts, download, imagedef, proc
from .config import Settings, Target, is_flex
from .errors import CloudError, ConfigError, LimitExceeded, TransferError
from .providers.oci.api import Api, Refused  # the one seam for OCI SDK calls (retries, error mapping)

# Object Storage: one PutObject takes at most 50 GiB; larger files (and, here, anything above PART_SIZE) go up in
# parts. OCI imports images of up to 400 GB. Always Free includes 20 GB of Object Storage in all.
PART_SIZE = 128 << 20
MAX_IMPORT_BYTES = 400 << 30
FREE_STORAGE_BYTES = 20 << 30
TAG_DIGEST = "nomadic-image-sha256"
TAG_SOURCE = "nomadic-import-source"
META_DIGEST = "opc-meta-nomadic-sha256"


class Source(str, enum.Enum):
    ALMALINUX = "almalinux"
    LOCAL = "local"


@dataclass(frozen=True)
class Qcow2:
    path: Path
    digest: str  # sha256:<hex> of the file: the image's identity across reruns
    size: int
    virtual_size: int
    display_name: str


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_source(raw: str) -> Source:
    try:
        return Source(str(raw).strip().lower())
    except ValueError:
        raise ConfigError(f"--source {raw!r} is not known", hint="use --source almalinux or --source local") from None


# ---- the file -------------------------------------------------------------------------------------------------


def _inspect(settings: Settings, path: Path, where: str) -> tuple[int, int]:
    """(file size, virtual disk size) of a qcow2; anything else is refused before any upload."""
    qemu_img = proc.which("qemu-img")
    result = proc.run([qemu_img, "info", "--output=json", str(path)], check=False)
    info: dict[str, Any] = {}
    if result.exit_code == 0:
        try:
            info = json.loads(result.stdout)
        except json.JSONDecodeError:
            info = {}
    if info.get("format") != "qcow2":
        raise ConfigError(f"{path} is not a qcow2 image ({where})", hint="import-image takes qcow2 files only")
    size, virtual = path.stat().st_size, int(info.get("virtual-size") or 0)
    if size > MAX_IMPORT_BYTES:
        raise ConfigError(f"{path} is {size / 2**30:.1f} GiB: OCI imports images of at most 400 GiB")
    if virtual > settings.oci.boot_volume_gb * 2**30:
        raise ConfigError(
            f"{path} is too large: its disk is {virtual / 2**30:.1f} GiB, more than the {settings.oci.boot_volume_gb} GB "
            "boot volume (oci.boot_volume_gb) its nodes get",
            hint="raise oci.boot_volume_gb (Always Free: 200 GB of block storage in all) or bake a smaller disk",
        )
    return size, virtual


def almalinux_qcow2(settings: Settings, image: imagedef.ImageDef) -> Qcow2:
    base = image.oci
    where = f"{image.path} (oci.import)"
    if not base.import_url:
        raise ConfigError(f"{image.path}: oci.import.url is empty", hint="set it to AlmaLinux's OCI qcow2 URL")
    expected = download.expected_digest(base.import_url, base.import_checksum, base.import_checksum_url, where)
    name = base.import_url.rsplit("/", 1)[-1]
    path = download.fetch(base.import_url, settings.build_dir / "import" / name, expected, where)
    digest = expected if expected.startswith("sha256:") else download.digest_of(path)
    size, virtual = _inspect(settings, path, where)
    return Qcow2(path, digest, size, virtual, name.removesuffix(".qcow2"))


def local_qcow2(settings: Settings, image: imagedef.ImageDef, path: Path | None) -> Qcow2:
    recorded = None
    if path is None:
        recorded = artifacts.lookup(settings, Target.QEMU, image.name)
        if not recorded or not recorded.get("path"):
            raise ConfigError(
                f"no local qcow2 recorded for image definition {image.name} in {artifacts.path(settings)}",
                hint="run `invoke build-image --target qemu` first, or pass --path to a qcow2",
            )
        path = Path(recorded["path"])
    where = "--path" if recorded is None else f"recorded in {artifacts.path(settings)}"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist ({where})", hint="rebuild it with `invoke build-image --target qemu`")
    size, virtual = _inspect(settings, path, where)
    progress = download.Progress(f"checksumming {path.name}", size)
    digest = download.digest_of(path, progress=progress)
    if recorded and recorded.get("sha256") and digest != f"sha256:{recorded['sha256']}":
        raise TransferError(
            f"checksum mismatch for {path}: build-image recorded sha256:{recorded['sha256']}, the file is now {digest}; "
            "nothing was uploaded",
            hint="the file changed since it was built: rebuild it, or pass --path to import it as it is",
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return Qcow2(path, digest, size, virtual, f"{image.image_name}-{stamp}")


# ---- OCI ---------------------------------------------------------------------------------------------------------


class _Oci:
    """The SDK calls of an import, made through the seam (retries, error mapping), with what an import adds to
    its errors: which bucket is not authorized, and what to delete when a limit is reached."""

    def __init__(self, settings: Settings) -> None:
        import oci

        self.oci = oci
        self.settings = settings
        self.api = Api(settings)
        self.compute = self.api.compute
        self.storage = self.api.objectstorage
        self.work = self.api.workrequests
        self.compartment = settings.oci.compartment_id or self.api.session.tenancy_id
        self.bucket = settings.oci.image_bucket

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The whole response (some answers are in headers: etag, work request id), errors as `_mapped` says."""
        try:
            return self.api.call_response(what, fn, *args, **kwargs)
        except (Refused, LimitExceeded) as exc:
            raise self._mapped(what, exc) from None

    def list(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        try:
            return self.api.list(what, fn, *args, **kwargs)
        except (Refused, LimitExceeded) as exc:
            raise self._mapped(what, exc) from None

    def _mapped(self, what: str, exc: Refused | LimitExceeded) -> Refused | LimitExceeded:
        if isinstance(exc, LimitExceeded):  # the seam's hint speaks of instances; here objects and images count
            return LimitExceeded(exc.message, hint="delete objects or images you no longer need, or raise the limit")
        if exc.status in (403, 404) and ("bucket" in what or exc.code in ("BucketNotFound", "NotAuthorized")):
            return Refused(
                f"{what}: bucket {self.bucket!r} is not found or this user is not authorized ({exc.status} {exc.code})",
                exc.status, exc.code,
                hint="set oci.image_bucket to a bucket you may use, or add a policy such as 'allow group <g> to manage "
                "objects in compartment <c>' and '... manage buckets ...'",
            )
        return exc

    # ---- images ----
    def find_imported(self, digest: str) -> Any | None:
        """The newest image in the compartment imported from this digest (AVAILABLE or still IMPORTING)."""
        images = self.list(
            "listing images", self.compute.list_images, self.compartment, sort_by="TIMECREATED", sort_order="DESC"
        )
        for img in images:
            tags = img.freeform_tags or {}
            if tags.get(TAG_DIGEST) == digest and img.lifecycle_state in ("AVAILABLE", "IMPORTING"):
                return img
        return None

    def create_image(self, q: Qcow2, namespace: str, obj: str, source: Source, base: imagedef.OciBase) -> tuple[Any, str]:
        m = self.oci.core.models
        details = m.CreateImageDetails(
            compartment_id=self.compartment,
            display_name=q.display_name,
            launch_mode="PARAVIRTUALIZED",
            freeform_tags={TAG_DIGEST: q.digest, TAG_SOURCE: source.value},
            image_source_details=m.ImageSourceViaObjectStorageTupleDetails(
                namespace_name=namespace,
                bucket_name=self.bucket,
                object_name=obj,
                source_image_type="QCOW2",
                operating_system=base.operating_system or "AlmaLinux",
                operating_system_version=base.operating_system_version or "9",
            ),
        )
        # A retry token: when the seam resends after a 429 or a lost answer, OCI returns the first image, not a second.
        resp = self.call("creating the image", self.compute.create_image, details, opc_retry_token=uuid.uuid4().hex)
        return resp.data, resp.headers.get("opc-work-request-id", "")

    def wait_available(self, image_id: str, work_request: str) -> Any:
        o = self.settings.oci
        deadline = time.monotonic() + o.import_timeout_s
        last = ""
        while True:
            if work_request:
                wr = self.call(f"work request {work_request}", self.work.get_work_request, work_request).data
                line = f"importing: {wr.status} {int(wr.percent_complete or 0)}%"
                if wr.status in ("FAILED", "CANCELED"):
                    errors = self.list(
                        f"work request {work_request} errors", self.work.list_work_request_errors, work_request
                    )
                    reason = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no reason given"
                    raise CloudError(
                        f"OCI could not import image {image_id}: work request {wr.status} ({reason})",
                        hint="fix the cause, then rerun import-image (the uploaded object is reused)",
                    )
            img = self.call(f"image {image_id}", self.compute.get_image, image_id).data
            if not work_request:
                line = f"importing: image {img.lifecycle_state}"
            if line != last:
                _say(line)
                last = line
            if img.lifecycle_state == "AVAILABLE":
                return img
            if img.lifecycle_state in ("DELETED", "DISABLED"):
                raise CloudError(f"image {image_id} became {img.lifecycle_state} while importing")
            if time.monotonic() > deadline:
                raise CloudError(
                    f"image {image_id} is still {img.lifecycle_state} after {o.import_timeout_s:.0f}s",
                    hint="rerun import-image later: it waits for this image instead of importing again (oci.import_timeout_s)",
                )
            time.sleep(o.poll_interval_s)

    def ensure_shape(self, image_id: str) -> None:
        o = self.settings.oci
        entries = self.list(f"image {image_id} shapes", self.compute.list_image_shape_compatibility_entries, image_id)
        if any(e.shape == o.shape for e in entries):
            return
        m = self.oci.core.models
        details = m.AddImageShapeCompatibilityEntryDetails()
        if is_flex(o.shape):  # Flex shapes: the OCPU and memory range instances of this image may have
            details = m.AddImageShapeCompatibilityEntryDetails(
                ocpu_constraints=m.ImageOcpuConstraints(min=1, max=max(1, int(-(-o.ocpus // 1)))),
                memory_constraints=m.ImageMemoryConstraints(min_in_gbs=1, max_in_gbs=max(1, int(-(-o.memory_gb // 1)))),
            )
        _say(f"making image {image_id} compatible with shape {o.shape}")
        self.call(f"adding shape {o.shape} to image {image_id}", self.compute.add_image_shape_compatibility_entry,
                  image_id, o.shape, add_image_shape_compatibility_entry_details=details)

    # ---- object storage ----
    def namespace(self) -> str:
        return str(self.call("reading the Object Storage namespace", self.storage.get_namespace).data)

    def ensure_bucket(self, namespace: str) -> Any:
        """The bucket (approximate size included), created private when missing."""
        what = f"reading bucket {self.bucket}"
        try:
            return self.call(what, self.storage.get_bucket, namespace, self.bucket, fields=["approximateSize"]).data
        except Refused as exc:
            if exc.status != 404:
                raise
        _say(f"creating private bucket {self.bucket} in namespace {namespace}")
        details = self.oci.object_storage.models.CreateBucketDetails(
            name=self.bucket, compartment_id=self.compartment, public_access_type="NoPublicAccess"
        )
        try:
            self.call(f"creating bucket {self.bucket}", self.storage.create_bucket, namespace, details)
        except Refused as exc:
            if exc.status != 409:  # 409: created meanwhile by someone else; read it below
                raise
        return self.call(what, self.storage.get_bucket, namespace, self.bucket, fields=["approximateSize"]).data

    def uploaded_digest(self, namespace: str, obj: str) -> str:
        try:
            what = f"reading object {obj} in bucket {self.bucket}"
            head = self.call(what, self.storage.head_object, namespace, self.bucket, obj)
        except Refused as exc:
            if exc.status == 404:  # HEAD has no body, so no code: the bucket exists (just checked), the object not
                return ""
            raise
        return str(head.headers.get(META_DIGEST, ""))

    def upload(self, namespace: str, obj: str, q: Qcow2) -> None:
        meta = {"nomadic-sha256": q.digest}
        progress = download.Progress(f"uploading {q.path.name}", q.size)
        what = f"uploading to bucket {self.bucket}"
        if q.size <= PART_SIZE:
            self.call(what, self.storage.put_object, namespace, self.bucket, obj, q.path.read_bytes(), opc_meta=meta)
            progress(q.size, final=True)
            return
        m = self.oci.object_storage.models
        upload = self.call(
            what, self.storage.create_multipart_upload, namespace, self.bucket, m.CreateMultipartUploadDetails(object=obj, metadata=meta)
        ).data
        parts, done = [], 0
        try:
            with q.path.open("rb") as fh:
                for number, chunk in enumerate(iter(lambda: fh.read(PART_SIZE), b""), start=1):
                    resp = self.call(f"{what} (part {number})", self.storage.upload_part, namespace, self.bucket, obj, upload.upload_id, number, chunk)
                    parts.append(m.CommitMultipartUploadPartDetails(part_num=number, etag=resp.headers["etag"]))
                    done += len(chunk)
                    progress(done)
            self.call(what, self.storage.commit_multipart_upload, namespace, self.bucket, obj, upload.upload_id,
                      m.CommitMultipartUploadDetails(parts_to_commit=parts))
        except BaseException:
            try:  # parts of an unfinished upload count as stored bytes until aborted
                self.api.call(
                    f"{what} (aborting)", self.storage.abort_multipart_upload, namespace, self.bucket, obj, upload.upload_id
                )
            except Exception:
                pass
            raise
        progress(done, final=True)

    def delete_object(self, namespace: str, obj: str) -> None:
        self.call(f"deleting object {obj}", self.storage.delete_object, namespace, self.bucket, obj)


# ---- the task --------------------------------------------------------------------------------------------------


def import_image(settings: Settings, source: Source, path: Path | None = None, delete_object: bool | None = None) -> str:
    """Import the qcow2 for `source`; returns the image OCID (reused when the same digest was imported before)."""
    image = imagedef.load(settings.build.image)
    if path is not None and source is not Source.LOCAL:
        raise ConfigError("--path goes with --source local", hint="drop --path, or use --source local --path FILE")
    q = almalinux_qcow2(settings, image) if source is Source.ALMALINUX else local_qcow2(settings, image, path)
    _say(f"{q.path}: {q.size / 1e6:.1f} MB, disk {q.virtual_size / 2**30:.1f} GiB, {q.digest}")
    api = _Oci(settings)
    found = api.find_imported(q.digest)
    if found is not None:
        _say(f"reusing image {found.display_name} ({found.id}), imported before from {q.digest}")
        img = api.wait_available(found.id, "")
    else:
        img = _upload_and_create(settings, api, q, source, image.oci, delete_object)
    api.ensure_shape(img.id)
    record = {
        "image_id": img.id,
        "display_name": img.display_name,
        "region": settings.oci.region,
        "sha256": q.digest.removeprefix("sha256:"),
        "source": source.value,
        "imported_from": str(q.path),
    }
    if source is Source.LOCAL:  # our own bake: the node image launch boots
        where = artifacts.record(settings, Target.OCI, image.name, record)
        _say(f"image {img.id} is AVAILABLE; recorded in {where} for `invoke launch`")
    else:  # AlmaLinux's image: the base build-image --target oci bakes on
        where = artifacts.record_base(settings, image.name, record)
        _say(f"image {img.id} is AVAILABLE; recorded in {where} as the base for `invoke build-image --target oci`")
    print(img.id)
    return str(img.id)


def _upload_and_create(
    settings: Settings, api: _Oci, q: Qcow2, source: Source, base: imagedef.OciBase, delete_object: bool | None
) -> Any:
    namespace = api.namespace()
    bucket = api.ensure_bucket(namespace)
    obj = f"{q.display_name}.qcow2"
    if api.uploaded_digest(namespace, obj) == q.digest:
        _say(f"object {obj} in bucket {api.bucket} already holds this file; not uploading again")
    else:
        used = int(getattr(bucket, "approximate_size", None) or 0)
        if not settings.oci.allow_paid and used + q.size > FREE_STORAGE_BYTES:
            raise LimitExceeded(
                f"uploading {q.size / 2**30:.1f} GiB to bucket {api.bucket} (holding {used / 2**30:.1f} GiB) would exceed "
                "the Always Free Object Storage allowance of 20 GB; nothing was uploaded",
                hint="delete old objects (e.g. earlier uploads: see oci.delete_uploaded_object), or pass --allow-paid",
            )
        api.upload(namespace, obj, q)
    created, work_request = api.create_image(q, namespace, obj, source, base)
    _say(f"creating image {q.display_name} ({created.id}) from {api.bucket}/{obj}; this takes 10-30 minutes on OCI")
    img = api.wait_available(created.id, work_request)
    if settings.oci.delete_uploaded_object if delete_object is None else delete_object:
        api.delete_object(namespace, obj)
        _say(f"deleted object {obj} from bucket {api.bucket}")
    return img
