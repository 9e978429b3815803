"""import-image with the real oci SDK against the emulator, and downloads from a loopback HTTP server.

The qcow2 files are real ones from `qemu-img create -f qcow2`; checksums are computed here with hashlib, not by
the code under test.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from nomadic import artifacts, baseimage, download, imagedef, imageimport
from nomadic.config import Target
from nomadic.errors import CloudError, ConfigError, LimitExceeded, TransferError
from tests.httpfiles import FileServer
from tests.ociemu import Emulator
from tests.ociemu.objectstorage import IMPORTED_SHAPES
from tests.ociemu.server import COMPARTMENT, MICRO
from tests.ociemu.testing import settings_for

from packer_support import require_tool

ROOT = Path(__file__).resolve().parent.parent
ALMA = "AlmaLinux-9-OCI-9.7-20251118.x86_64.qcow2"


def make_qcow2(path: Path, size: str = "1G", fill: int = 0) -> Path:
    require_tool("qemu-img")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    if fill:  # grow the file past the multipart threshold: data appended after the header is ignored by qemu
        with path.open("ab") as fh:
            fh.write(bytes(range(256)) * (fill // 256))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


@pytest.fixture
def mirror(tmp_path: Path):
    """repo.almalinux.org on loopback: the OCI qcow2 and its CHECKSUM file in AlmaLinux's (BSD) format."""
    root = tmp_path / "mirror"
    qcow2 = make_qcow2(root / ALMA)
    (root / "CHECKSUM").write_text(
        f"# AlmaLinux cloud images\nSHA256 (other.qcow2) = {'0' * 64}\nSHA256 ({ALMA}) = {sha256(qcow2)}\n"
    )
    server = FileServer(root)
    yield server
    server.close()


@pytest.fixture
def images_dir(tmp_path: Path, mirror: FileServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped almalinux9 definition with oci.import pointed at the loopback mirror."""
    import yaml

    data = yaml.safe_load((ROOT / "images" / "almalinux9.yaml").read_text())
    data["oci"]["import"] = {"url": f"{mirror.url}/{ALMA}", "checksum_url": f"{mirror.url}/CHECKSUM"}
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "almalinux9.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(imagedef, "IMAGES_DIR", folder)
    return folder


def test_checksum_files_in_both_formats() -> None:
    bsd = f"SHA256 ({ALMA}) = {'ab' * 32}\n"
    gnu = f"{'cd' * 32}  {ALMA}\n"
    assert download.parse_checksums(bsd, ALMA) == f"sha256:{'ab' * 32}"
    assert download.parse_checksums(gnu, ALMA) == f"sha256:{'cd' * 32}"
    assert download.parse_checksums(bsd, "AlmaLinux-9-OCI-latest.x86_64.qcow2") is None


def test_almalinux_import_end_to_end(emu: Emulator, tmp_path: Path, images_dir: Path, mirror: FileServer) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    image_id = imageimport.import_image(settings, imageimport.Source.ALMALINUX)

    want = sha256(mirror.root / ALMA)
    assert (settings.build_dir / "import" / ALMA).read_bytes() == (mirror.root / ALMA).read_bytes()
    assert emu.buckets["nomadic-images"]["publicAccessType"] == "NoPublicAccess"
    assert emu.buckets["nomadic-images"]["compartmentId"] == COMPARTMENT
    stored = emu.objects[("nomadic-images", ALMA)]
    assert stored["data"] == (mirror.root / ALMA).read_bytes()
    assert stored["meta"]["opc-meta-nomadic-sha256"] == f"sha256:{want}"
    rec = emu.images[image_id]
    assert rec["name"] == ALMA.removesuffix(".qcow2")
    assert rec["imported"]["launchMode"] == "PARAVIRTUALIZED"
    assert (rec["imported"]["operatingSystem"], rec["imported"]["operatingSystemVersion"]) == ("AlmaLinux", "9")
    assert rec["shapes"] == [*IMPORTED_SHAPES, MICRO]
    assert rec["constraints"][MICRO] == {"ocpuConstraints": None, "memoryConstraints": None}
    base = artifacts.lookup_base(settings, "almalinux9")
    assert base is not None and base["image_id"] == image_id and base["sha256"] == want
    assert artifacts.lookup(settings, Target.OCI) is None  # a base, not a node image: launch must not boot it


def test_download_resumes_with_a_range_request(tmp_path: Path, mirror: FileServer) -> None:
    data = (mirror.root / ALMA).read_bytes()
    dest = tmp_path / "dl" / ALMA
    dest.parent.mkdir()
    (dest.parent / f"{ALMA}.part").write_bytes(data[:1000])  # what a broken-off earlier run left
    expected = f"sha256:{hashlib.sha256(data).hexdigest()}"
    download.fetch(f"{mirror.url}/{ALMA}", dest, expected, "test")
    assert dest.read_bytes() == data
    assert mirror.requests == [(f"/{ALMA}", "bytes=1000-")]
    assert not (dest.parent / f"{ALMA}.part").exists()


def test_download_starts_over_when_the_server_ignores_range(tmp_path: Path, mirror: FileServer) -> None:
    mirror.ignore_range = True
    data = (mirror.root / ALMA).read_bytes()
    dest = tmp_path / ALMA
    (tmp_path / f"{ALMA}.part").write_bytes(b"x" * 1000)  # junk: a resume onto it would not verify
    download.fetch(f"{mirror.url}/{ALMA}", dest, f"sha256:{hashlib.sha256(data).hexdigest()}", "test")
    assert dest.read_bytes() == data


def test_checksum_mismatch_uploads_nothing(emu: Emulator, tmp_path: Path, images_dir: Path, mirror: FileServer) -> None:
    (mirror.root / "CHECKSUM").write_text(f"SHA256 ({ALMA}) = {'1' * 64}\n")
    settings = settings_for(emu, tmp_path, record_image=False)
    with pytest.raises(TransferError, match="checksum mismatch .* nothing was uploaded"):
        imageimport.import_image(settings, imageimport.Source.ALMALINUX)
    assert not (settings.build_dir / "import" / ALMA).exists()
    assert not (settings.build_dir / "import" / f"{ALMA}.part").exists()
    assert emu.calls["os_put_object"] == emu.calls["os_create_bucket"] == emu.calls["create_image"] == 0


def _local(settings, tmp_path: Path, fill: int = 0) -> Path:
    qcow2 = make_qcow2(tmp_path / "out" / "nomadic-almalinux9.qcow2", fill=fill)
    artifacts.record(settings, Target.QEMU, "almalinux9", {"path": str(qcow2), "sha256": sha256(qcow2)})
    return qcow2


def test_local_import_multipart_then_rerun_reuses(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageimport, "PART_SIZE", 64 << 10)
    settings = settings_for(emu, tmp_path, record_image=False)
    qcow2 = _local(settings, tmp_path, fill=300 << 10)
    parts = -(-qcow2.stat().st_size // (64 << 10))
    image_id = imageimport.import_image(settings, imageimport.Source.LOCAL, delete_object=False)

    assert emu.calls["os_create_multipart_upload"] == 1 and emu.calls["os_upload_part"] == parts
    assert emu.calls["os_commit_multipart_upload"] == 1 and emu.calls["os_put_object"] == 0
    (obj,) = [o for (b, _), o in emu.objects.items() if b == "nomadic-images"]
    assert obj["data"] == qcow2.read_bytes()  # the parts were assembled in order
    node = artifacts.lookup(settings, Target.OCI)
    assert node is not None and node["image_id"] == image_id  # where launch looks for its node image
    assert emu.images[image_id]["name"].startswith("nomadic-almalinux9-")

    again = imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert again == image_id
    assert emu.calls["create_image"] == 1 and emu.calls["os_upload_part"] == parts


def test_local_file_changed_since_the_build_is_refused(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    qcow2 = _local(settings, tmp_path)
    with qcow2.open("ab") as fh:
        fh.write(b"changed")
    with pytest.raises(TransferError, match="checksum mismatch .* nothing was uploaded"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.calls["os_get_namespace"] == 0 and emu.objects == {}


def test_no_local_build_recorded(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    with pytest.raises(ConfigError, match=r"build-image --target qemu.*--path"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)


def test_delete_object_after_import(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False, oci={"delete_uploaded_object": True})
    _local(settings, tmp_path)
    imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.objects == {} and emu.calls["os_delete_object"] == 1


def test_bucket_not_authorized(emu: Emulator, tmp_path: Path) -> None:
    emu.denied_buckets.add("nomadic-images")
    settings = settings_for(emu, tmp_path, record_image=False)
    _local(settings, tmp_path)
    with pytest.raises(CloudError, match=r"bucket 'nomadic-images' is not found or this user is not authorized") as err:
        imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert "oci.image_bucket" in str(err.value) and "policy" in str(err.value)
    assert emu.buckets == {} and emu.calls["create_image"] == 0


def test_bucket_readable_but_not_writable(emu: Emulator, tmp_path: Path) -> None:
    emu.add_bucket("nomadic-images", COMPARTMENT)
    emu.read_only_buckets.add("nomadic-images")
    settings = settings_for(emu, tmp_path, record_image=False)
    _local(settings, tmp_path)
    with pytest.raises(CloudError, match=r"uploading to bucket nomadic-images: bucket 'nomadic-images' is not found"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.objects == {} and emu.calls["create_image"] == 0


def test_failed_import_work_request_gives_ocis_reason(emu: Emulator, tmp_path: Path) -> None:
    emu.import_failures.append("The image's boot partition could not be found")
    settings = settings_for(emu, tmp_path, record_image=False)
    _local(settings, tmp_path)
    with pytest.raises(CloudError, match=r"work request FAILED \(ImageImportFailed: The image's boot partition could not be found\)"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert artifacts.lookup(settings, Target.OCI) is None


def test_image_over_the_import_limit_fails_in_the_work_request(emu: Emulator, tmp_path: Path) -> None:
    emu.max_image_bytes = 1000
    settings = settings_for(emu, tmp_path, record_image=False)
    _local(settings, tmp_path)
    with pytest.raises(CloudError, match=r"more than the largest importable image"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)


def test_disk_larger_than_the_boot_volume_is_refused_before_upload(emu: Emulator, tmp_path: Path) -> None:
    # 47 GB is OCI's smallest boot volume; a sparse 48 GiB qcow2 takes no room here.
    settings = settings_for(emu, tmp_path, record_image=False, oci={"boot_volume_gb": 47})
    qcow2 = make_qcow2(tmp_path / "big.qcow2", size="48G")
    with pytest.raises(ConfigError, match=r"too large: its disk is 48.0 GiB, more than the 47 GB boot volume \(oci.boot_volume_gb\)"):
        imageimport.import_image(settings, imageimport.Source.LOCAL, path=qcow2)
    assert emu.calls["os_get_namespace"] == 0


def test_not_a_qcow2_is_refused(emu: Emulator, tmp_path: Path) -> None:
    raw = tmp_path / "disk.qcow2"
    raw.write_bytes(b"\0" * 4096)
    settings = settings_for(emu, tmp_path, record_image=False)
    require_tool("qemu-img")
    with pytest.raises(ConfigError, match="is not a qcow2 image"):
        imageimport.import_image(settings, imageimport.Source.LOCAL, path=raw)


def test_always_free_storage_allowance(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    qcow2 = _local(settings, tmp_path)
    emu.add_bucket("nomadic-images", COMPARTMENT)
    emu.objects[("nomadic-images", "old.qcow2")] = {"data": b"x" * 5000, "etag": "e", "meta": {}}
    # The allowance is 20 GB; the test scales it down to what the bucket holds plus less than the new file.
    monkeypatch.setattr(imageimport, "FREE_STORAGE_BYTES", 5000 + qcow2.stat().st_size - 1)
    with pytest.raises(LimitExceeded, match=r"would exceed the Always Free Object Storage allowance of 20 GB; nothing was uploaded"):
        imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert list(emu.objects) == [("nomadic-images", "old.qcow2")]
    paid = settings_for(emu, tmp_path, record_image=False, oci={"allow_paid": True})
    assert imageimport.import_image(paid, imageimport.Source.LOCAL).startswith("ocid1.image.")


def test_flex_shape_gets_ocpu_and_memory_constraints(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False, oci={"shape": "VM.Standard.E4.Flex", "ocpus": 2, "memory_gb": 12})
    _local(settings, tmp_path)
    image_id = imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.images[image_id]["constraints"]["VM.Standard.E4.Flex"] == {
        "ocpuConstraints": {"min": 1, "max": 2}, "memoryConstraints": {"minInGBs": 1, "maxInGBs": 12}
    }


def test_an_existing_bucket_is_used_as_it_is(emu: Emulator, tmp_path: Path) -> None:
    emu.add_bucket("nomadic-images", COMPARTMENT)
    settings = settings_for(emu, tmp_path, record_image=False)
    _local(settings, tmp_path)
    imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.calls["os_create_bucket"] == 0 and len(emu.objects) == 1


def test_imported_base_is_what_build_image_bakes_on(emu: Emulator, tmp_path: Path, images_dir: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    image_id = imageimport.import_image(settings, imageimport.Source.ALMALINUX)
    found = baseimage.resolve(settings, imagedef.load("almalinux9"))
    assert found.image_id == image_id and "import-image" in found.how
    artifacts.record_base(settings, "almalinux9", {})  # forget the record: the filter still finds the import
    found = baseimage.resolve(settings, imagedef.load("almalinux9"))
    assert found.image_id == image_id and "filter" in found.how


def test_no_base_image_names_both_ways_and_the_setting(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    with pytest.raises(ConfigError) as err:
        baseimage.resolve(settings, imagedef.load("almalinux9"))
    text = str(err.value)
    assert "invoke import-image --source almalinux" in text and "Marketplace" in text
    assert "oci.base_image_ocid" in text



def test_import_image_through_invoke(emu: Emulator, tmp_path: Path) -> None:
    """From the command line: one OCID on stdout, one error line for a wrong flag, nothing created by it."""
    from tests.ociemu.testing import env_for
    from tests.test_oci_e2e import invoke, project

    root = project(tmp_path)
    env = env_for(emu, tmp_path)
    qcow2 = make_qcow2(tmp_path / "mine.qcow2")
    bad = invoke(root, env, "import-image", "--source", "nope")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: --source 'nope' is not known (use --source almalinux or --source local)"
    ]
    run = invoke(root, env, "import-image", "--source", "local", "--path", str(qcow2), "--delete-object")
    assert run.returncode == 0, run.stderr
    image_id = run.stdout.strip()
    assert emu.images[image_id]["imported"]["freeformTags"]["nomadic-image-sha256"] == f"sha256:{sha256(qcow2)}"
    assert emu.objects == {} and "uploading mine.qcow2" in run.stderr and "Traceback" not in run.stderr
    recorded = json.loads((root / "build" / "artifacts.json").read_text())
    assert recorded["oci"]["almalinux9"]["image_id"] == image_id
    # launch boots the imported image on the Always Free shape it was made compatible with
    launched = invoke(root, env, "launch", "--count", "1")
    assert launched.returncode == 0, launched.stderr
    assert [b["sourceDetails"]["imageId"] for b in emu.launch_bodies] == [image_id]
    assert emu.launch_bodies[0]["shape"] == MICRO


def test_throttled_calls_are_retried(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OCI may answer 429 to any call: a throttled part upload and image creation are retried, not fatal."""
    from tests.ociemu import Fault

    monkeypatch.setattr(imageimport, "PART_SIZE", 64 << 10)
    settings = settings_for(emu, tmp_path, record_image=False)
    qcow2 = _local(settings, tmp_path, fill=300 << 10)
    parts = -(-qcow2.stat().st_size // (64 << 10))
    emu.inject(
        Fault("PUT", "os_upload_part", 429, "TooManyRequests", "Too many requests for the user", skip=1),
        Fault("POST", "create_image", 429, "TooManyRequests", "Too many requests for the user"),
    )
    image_id = imageimport.import_image(settings, imageimport.Source.LOCAL)
    assert emu.calls["os_upload_part"] == parts + 1 and emu.calls["create_image"] == 2
    (obj,) = emu.objects.values()
    assert obj["data"] == qcow2.read_bytes()
    assert sum(1 for i in emu.images.values() if "imported" in i) == 1 and image_id in emu.images
