"""Object Storage and image import for the emulator: what `invoke import-image` calls, failures included.

Mixed into server.Emulator (its fields become Emulator's keyword arguments); server.py routes to the handlers via
ROUTES. Behaviour follows OCI's API reference:
- GetNamespace returns the tenancy's namespace as a JSON string.
- GetBucket answers 404 BucketNotFound both for a missing bucket and one the user may not see (`denied_buckets`);
  CreateBucket answers 409 BucketAlreadyExists for a taken name and 404 NotAuthorizedOrNotFound without a policy.
  `fields=approximateSize` adds the bytes stored (committed objects and uncommitted multipart parts).
- PutObject/HeadObject/DeleteObject: ETag and opc-meta-* headers; HEAD and DELETE of a missing object 404.
  `read_only_buckets` can be read but not written (404 BucketNotFound on writes, as OCI hides what you may not use).
- Multipart: part numbers 1..10000, each part's ETag returned on upload; commit must list every uploaded part
  (in partsToCommit or partsToExclude) with its ETag, and assembles the parts in ascending order; abort frees them.
- CreateImage from an object (ImageSourceViaObjectStorageTupleDetails) returns the image IMPORTING and an
  opc-work-request-id; the work request fails (with its errors listed) for a missing object, a file that is not
  QCOW2, one over `max_image_bytes`, or a reason queued in `import_failures`; else after `import_delay` seconds
  the image is AVAILABLE and the work request SUCCEEDED. Imported images are compatible with IMPORTED_SHAPES only
  until AddImageShapeCompatibilityEntry adds more (OCPU/memory constraints only for Flex shapes).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "emulatorns"
IMPORTED_SHAPES = ("VM.Standard2.1",)
QCOW2_MAGIC = b"QFI\xfb"
BUCKET_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,256}$")

Reply = tuple[int, Any, dict[str, str]]


def _err(status: int, code: str, message: str) -> Exception:
    from .server import ApiError

    return ApiError(status, code, message)


def _now() -> str:
    from .server import _now_text

    return _now_text()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class _Upload:
    object: str
    metadata: dict[str, str]
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # part number -> (data, etag)


@dataclass
class _Import:
    image_id: str
    work_request: str
    started: float
    failure: str = ""  # set: the work request fails with this reason
    shapes: list[str] = field(default_factory=list)


@dataclass
class ObjectStorageMixin:
    import_delay: float = 0.0
    max_image_bytes: int = 400 << 30
    denied_buckets: set[str] = field(default_factory=set)
    read_only_buckets: set[str] = field(default_factory=set)
    import_failures: list[str] = field(default_factory=list)  # reasons for the next imports' work requests to fail
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (bucket, name) -> object
    uploads: dict[str, _Upload] = field(default_factory=dict)
    imports: dict[str, _Import] = field(default_factory=dict)  # image id -> import
    work_requests: dict[str, str] = field(default_factory=dict)  # work request id -> image id

    # ---- test helpers -------------------------------------------------------------------------------------------
    def add_bucket(self, name: str, compartment: str, public: str = "NoPublicAccess") -> None:
        self.buckets[name] = {"name": name, "compartmentId": compartment, "publicAccessType": public}

    def stored_bytes(self, bucket: str) -> int:
        committed = sum(len(o["data"]) for (b, _), o in self.objects.items() if b == bucket)
        pending = sum(len(d) for u in self.uploads.values() if u.object.startswith(f"{bucket}/") for d, _ in u.parts.values())
        return committed + pending

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _namespace_ok(self, ns: str) -> None:
        if ns != NAMESPACE:
            raise _err(404, "NamespaceNotFound", f"You do not have authorization to perform this request, or the requested resource could not be found (namespace {ns})")

    def _bucket(self, ns: str, bucket: str, write: bool = False) -> dict[str, Any]:
        self._namespace_ok(ns)
        if bucket not in self.buckets or bucket in self.denied_buckets or (write and bucket in self.read_only_buckets):
            raise _err(404, "BucketNotFound", f"Either the bucket named '{bucket}' does not exist in the namespace '{ns}' or you are not authorized to access it")
        return self.buckets[bucket]

    def _bucket_json(self, ns: str, b: dict[str, Any], fields: str) -> dict[str, Any]:
        out = {
            "namespace": ns, "name": b["name"], "compartmentId": b["compartmentId"], "createdBy": "ocid1.user.oc1..emu",
            "timeCreated": _now(), "etag": uuid.uuid4().hex, "publicAccessType": b["publicAccessType"],
            "storageTier": "Standard", "metadata": {}, "freeformTags": {}, "definedTags": {},
        }
        if "approximateSize" in fields:
            out["approximateSize"] = self.stored_bytes(b["name"])
        if "approximateCount" in fields:
            out["approximateCount"] = sum(1 for (bk, _) in self.objects if bk == b["name"])
        return out

    @staticmethod
    def _meta(headers: Any) -> dict[str, str]:
        return {k.lower(): v for k, v in headers.items() if k.lower().startswith("opc-meta-")}

    # ---- object storage -------------------------------------------------------------------------------------------
    def _os_get_namespace(self, **_: Any) -> Reply:
        return 200, NAMESPACE, {}

    def _os_get_bucket(self, ns: str, bucket: str, query: dict[str, str], **_: Any) -> Reply:
        return 200, self._bucket_json(ns, self._bucket(ns, bucket), query.get("fields", "")), {}

    def _os_create_bucket(self, ns: str, body: dict[str, Any], **_: Any) -> Reply:
        self._namespace_ok(ns)
        name, comp = body.get("name") or "", body.get("compartmentId") or ""
        if not BUCKET_NAME_RE.match(name) or not comp:
            raise _err(400, "InvalidParameter", "A bucket needs a valid name and a compartmentId")
        if name in self.denied_buckets:
            raise _err(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        if name in self.buckets:
            raise _err(409, "BucketAlreadyExists", f"Either the bucket '{name}' in namespace '{ns}' already exists or you are not authorized to create it")
        public = body.get("publicAccessType") or "NoPublicAccess"
        if public not in ("NoPublicAccess", "ObjectRead", "ObjectReadWithoutList"):
            raise _err(400, "InvalidParameter", f"Invalid publicAccessType {public}")
        self.add_bucket(name, comp, public)
        return 200, self._bucket_json(ns, self.buckets[name], ""), {}

    def _os_put_object(self, ns: str, bucket: str, obj: str, raw: bytes, headers: Any, **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        etag = uuid.uuid4().hex
        self.objects[(bucket, obj)] = {"data": raw, "etag": etag, "meta": self._meta(headers)}
        return 200, b"", {"etag": etag, "opc-content-md5": _md5_b64(raw), "last-modified": _now()}

    def _os_head_object(self, ns: str, bucket: str, obj: str, **_: Any) -> Reply:
        self._bucket(ns, bucket)
        found = self.objects.get((bucket, obj))
        if found is None:
            raise _err(404, "ObjectNotFound", f"The object '{obj}' was not found in the bucket '{bucket}'")
        return 200, b"", {"etag": found["etag"], **found["meta"]}

    def _os_delete_object(self, ns: str, bucket: str, obj: str, **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        if self.objects.pop((bucket, obj), None) is None:
            raise _err(404, "ObjectNotFound", f"The object '{obj}' was not found in the bucket '{bucket}'")
        return 204, None, {}

    def _os_create_multipart_upload(self, ns: str, bucket: str, body: dict[str, Any], **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        name = body.get("object")
        if not name:
            raise _err(400, "InvalidParameter", "The object name is required")
        uid = uuid.uuid4().hex
        meta = {f"opc-meta-{k}": v for k, v in (body.get("metadata") or {}).items()}
        self.uploads[uid] = _Upload(f"{bucket}/{name}", meta)
        return 200, {"namespace": ns, "bucket": bucket, "object": name, "uploadId": uid, "timeCreated": _now(), "storageTier": "Standard"}, {}

    def _upload(self, bucket: str, obj: str, query: dict[str, str]) -> _Upload:
        up = self.uploads.get(query.get("uploadId", ""))
        if up is None or up.object != f"{bucket}/{obj}":
            raise _err(404, "NoSuchUpload", f"The upload ID {query.get('uploadId')} was not found for object {obj}")
        return up

    def _os_upload_part(self, ns: str, bucket: str, obj: str, query: dict[str, str], raw: bytes, **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        up = self._upload(bucket, obj, query)
        try:
            number = int(query.get("uploadPartNum", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10000:
            raise _err(400, "InvalidParameter", "uploadPartNum must be between 1 and 10000")
        etag = uuid.uuid4().hex
        up.parts[number] = (raw, etag)
        return 200, b"", {"etag": etag, "opc-content-md5": _md5_b64(raw)}

    def _os_commit_multipart_upload(self, ns: str, bucket: str, obj: str, query: dict[str, str], body: dict[str, Any], **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        up = self._upload(bucket, obj, query)
        commit = {int(p["partNum"]): p.get("etag") for p in body.get("partsToCommit") or []}
        exclude = {int(n) for n in body.get("partsToExclude") or []}
        if set(up.parts) != set(commit) | exclude or set(commit) & exclude or not commit:
            raise _err(400, "InvalidParameter", "Every uploaded part must be listed once, in partsToCommit or partsToExclude")
        for number, etag in commit.items():
            if up.parts[number][1] != etag:
                raise _err(400, "InvalidParameter", f"The ETag for part {number} does not match the uploaded part")
        data = b"".join(up.parts[n][0] for n in sorted(commit))
        digest = hashlib.md5(b"".join(hashlib.md5(up.parts[n][0]).digest() for n in sorted(commit))).digest()
        etag = uuid.uuid4().hex
        self.objects[(bucket, obj)] = {"data": data, "etag": etag, "meta": up.metadata}
        del self.uploads[query["uploadId"]]
        return 200, b"", {"etag": etag, "opc-multipart-md5": f"{base64.b64encode(digest).decode()}-{len(commit)}"}

    def _os_abort_multipart_upload(self, ns: str, bucket: str, obj: str, query: dict[str, str], **_: Any) -> Reply:
        self._bucket(ns, bucket, write=True)
        self._upload(bucket, obj, query)
        del self.uploads[query["uploadId"]]
        return 204, None, {}

    # ---- image import -----------------------------------------------------------------------------------------------
    def _create_image(self, body: dict[str, Any], **_: Any) -> Reply:
        src = body.get("imageSourceDetails") or {}
        comp = body.get("compartmentId")
        if not comp:
            raise _err(400, "MissingParameter", "Missing compartmentId")
        if src.get("sourceType") != "objectStorageTuple":
            raise _err(400, "InvalidParameter", "The emulator imports from objectStorageTuple sources only")
        if src.get("sourceImageType") not in ("QCOW2", "VMDK"):
            raise _err(400, "InvalidParameter", f"Invalid sourceImageType {src.get('sourceImageType')}")
        mode = body.get("launchMode") or "PARAVIRTUALIZED"
        if mode not in ("NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"):
            raise _err(400, "InvalidParameter", f"Invalid launchMode {mode}")
        from .server import _ocid

        image_id, wr = _ocid("image"), _ocid("workrequest")
        obj = self.objects.get((src.get("bucketName"), src.get("objectName"))) if src.get("namespaceName") == NAMESPACE else None
        failure = self.import_failures.pop(0) if self.import_failures else ""
        if obj is None:
            failure = failure or "The Object Storage object for the image could not be found or is not authorized"
        elif len(obj["data"]) > self.max_image_bytes:
            failure = failure or f"The image is {len(obj['data'])} bytes, more than the largest importable image ({self.max_image_bytes})"
        elif src.get("sourceImageType") == "QCOW2" and not obj["data"].startswith(QCOW2_MAGIC):
            failure = failure or "The image file is not a valid QCOW2 image"
        self.images[image_id] = {  # type: ignore[attr-defined]
            "shapes": list(IMPORTED_SHAPES),
            "name": body.get("displayName") or image_id,
            "imported": {
                "compartmentId": comp,
                "operatingSystem": src.get("operatingSystem") or "Custom",
                "operatingSystemVersion": src.get("operatingSystemVersion") or "",
                "freeformTags": body.get("freeformTags") or {},
                "launchMode": mode,
                "sizeInMBs": len(obj["data"]) // (1 << 20) if obj else 0,
            },
        }
        self.imports[image_id] = _Import(image_id, wr, time.monotonic(), failure)
        self.work_requests[wr] = image_id
        return 200, self._image_json(image_id), {"opc-work-request-id": wr}  # type: ignore[attr-defined]

    def _import_state(self, image_id: str) -> tuple[str, str, int]:
        """(image lifecycle, work request status, percent) now."""
        imp = self.imports[image_id]
        done = time.monotonic() >= imp.started + self.import_delay
        if not done:
            return "IMPORTING", "IN_PROGRESS", 50
        return ("DELETED", "FAILED", 100) if imp.failure else ("AVAILABLE", "SUCCEEDED", 100)

    def _image_extra(self, image_id: str) -> dict[str, Any]:
        """What server._image_json adds for an imported image (its own state, tags and OS)."""
        rec = self.images.get(image_id, {})  # type: ignore[attr-defined]
        if "imported" not in rec:
            return {}
        return {**rec["imported"], "lifecycleState": self._import_state(image_id)[0]}

    def _get_work_request(self, id: str, **_: Any) -> Reply:
        if id not in self.work_requests:
            raise _err(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        image_id = self.work_requests[id]
        _, status, percent = self._import_state(image_id)
        comp = self.images[image_id]["imported"]["compartmentId"]  # type: ignore[attr-defined]
        return 200, {
            "id": id, "operationType": "CreateImage", "status": status, "compartmentId": comp,
            "percentComplete": float(percent), "timeAccepted": _now(), "timeStarted": _now(),
            "resources": [{"entityType": "image", "actionType": "CREATED" if status == "SUCCEEDED" else "IN_PROGRESS",
                           "identifier": image_id, "entityUri": f"/20160918/images/{image_id}"}],
        }, {}

    def _list_work_request_errors(self, id: str, query: dict[str, str], **_: Any) -> Reply:
        if id not in self.work_requests:
            raise _err(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        imp = self.imports[self.work_requests[id]]
        failed = imp.failure and self._import_state(imp.image_id)[1] == "FAILED"
        items = [{"code": "ImageImportFailed", "message": imp.failure, "timestamp": _now()}] if failed else []
        return self._page(items, query)  # type: ignore[attr-defined]

    def _add_image_shape(self, id: str, shape: str, body: dict[str, Any], **_: Any) -> Reply:
        rec = self.images.get(id)  # type: ignore[attr-defined]
        if rec is None:
            raise _err(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        ocpu, memory = body.get("ocpuConstraints"), body.get("memoryConstraints")
        if (ocpu or memory) and not shape.endswith("Flex"):
            raise _err(400, "InvalidParameter", f"OCPU and memory constraints apply to flexible shapes only, not {shape}")
        if ocpu and ocpu.get("min") is not None and ocpu.get("max") is not None and ocpu["min"] > ocpu["max"]:
            raise _err(400, "InvalidParameter", "ocpuConstraints.min is greater than max")
        if memory and memory.get("minInGBs") is not None and memory.get("maxInGBs") is not None and memory["minInGBs"] > memory["maxInGBs"]:
            raise _err(400, "InvalidParameter", "memoryConstraints.minInGBs is greater than maxInGBs")
        if shape not in rec["shapes"]:
            rec["shapes"].append(shape)
        rec.setdefault("constraints", {})[shape] = {"ocpuConstraints": ocpu, "memoryConstraints": memory}
        return 200, {"imageId": id, "shape": shape, "ocpuConstraints": ocpu, "memoryConstraints": memory}, {}


_OS = r"^/n/(?P<ns>[^/]+)/b/(?P<bucket>[^/]+)"
# (method, path, handler name without the leading "_"); server.Emulator.ROUTES appends these.
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/n/?$"), "os_get_namespace"),
    ("POST", re.compile(r"^/n/(?P<ns>[^/]+)/b/?$"), "os_create_bucket"),
    ("GET", re.compile(_OS + r"/?$"), "os_get_bucket"),
    ("PUT", re.compile(_OS + r"/o/(?P<obj>.+)$"), "os_put_object"),
    ("HEAD", re.compile(_OS + r"/o/(?P<obj>.+)$"), "os_head_object"),
    ("DELETE", re.compile(_OS + r"/o/(?P<obj>.+)$"), "os_delete_object"),
    ("POST", re.compile(_OS + r"/u/?$"), "os_create_multipart_upload"),
    ("PUT", re.compile(_OS + r"/u/(?P<obj>.+)$"), "os_upload_part"),
    ("POST", re.compile(_OS + r"/u/(?P<obj>.+)$"), "os_commit_multipart_upload"),
    ("DELETE", re.compile(_OS + r"/u/(?P<obj>.+)$"), "os_abort_multipart_upload"),
    ("POST", re.compile(r"^/20160918/images$"), "create_image"),
    ("PUT", re.compile(r"^/20160918/images/(?P<id>[^/]+)/shapes/(?P<shape>[^/]+)$"), "add_image_shape"),
    ("GET", re.compile(r"^/20160918/workRequests/(?P<id>[^/]+)$"), "get_work_request"),
    ("GET", re.compile(r"^/20160918/workRequests/(?P<id>[^/]+)/errors$"), "list_work_request_errors"),
]
