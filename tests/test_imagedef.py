"""Image definitions: the shipped one loads; every malformed key gives one error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nomadic import imagedef
from nomadic.errors import ConfigError


def test_shipped_definition_loads_with_pinned_versions_and_both_bases() -> None:
    image = imagedef.load("almalinux9")
    assert image.name == "almalinux9"
    assert image.versions == imagedef.Versions(docker_ce="28.5.1", nomad="1.10.3", consul="1.21.4")
    assert image.oci.is_set and image.oci.operating_system == "AlmaLinux" and image.oci.operating_system_version == "9"
    assert image.local.urls and all(u.endswith(".x86_64.qcow2") for u in image.local.urls)
    assert image.local.packer_checksum.startswith("sha256:") and len(image.local.packer_checksum) == 7 + 64
    assert image.swap_mb == 1024


def base() -> dict:
    return yaml.safe_load(imagedef.path_for("almalinux9").read_text())


def write(tmp_path: Path, data: dict, name: str = "custom") -> Path:
    data = {**data, "name": name}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_second_definition_needs_no_code(tmp_path: Path) -> None:
    data = base()
    data["versions"]["nomad"] = "1.9.7"
    data["oci"] = {"base_image_ocid": "ocid1.image.oc1.eu-frankfurt-1.aaaaaaaabbbb"}
    data["local"] = {"urls": ["file:///srv/alma.qcow2"], "checksum_url": "https://example.invalid/CHECKSUM"}
    write(tmp_path, data, "second")
    image = imagedef.load("second", tmp_path)
    assert image.versions.nomad == "1.9.7"
    assert image.oci.base_image_ocid.startswith("ocid1.image.")
    assert image.local.packer_checksum == "file:https://example.invalid/CHECKSUM"
    assert imagedef.available(tmp_path) == ["second"]


def mutate(data: dict, dotted: str, value: object) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("versions.nomad", "latest", r"versions\.nomad = 'latest' is not a version"),
        ("versions.consul", DELETE, r"versions\.consul is missing"),
        ("versions.docker", "1.0.0", r"versions\.docker is not a known key"),
        ("image_name", "bad name!", r"image_name = 'bad name!' is not"),
        ("extra_packages", ["ok", "rm -rf /"], r"extra_packages\[1\] = 'rm -rf /' is not an RPM package name"),
        ("swap_mb", -1, r"swap_mb = -1 is outside"),
        ("swap_mb", "big", r"swap_mb must be a whole number"),
        ("oci.base_image_ocid", "ami-123", r"oci\.base_image_ocid = 'ami-123' is not an OCID"),
        ("oci.base_image_filter.display_name_search", "([", r"display_name_search is not a regular expression"),
        ("local.checksum", "md5:abc", r"local\.checksum = 'md5:abc' is not sha256"),
        ("local.checksum_url", "https://example.invalid/CHECKSUM", r"local\.checksum and checksum_url: give exactly one"),
        ("local.urls", ["ftp://x/y.qcow2"], r"local\.urls\[0\] = 'ftp://x/y.qcow2' is not"),
        ("local.memory_mb", 100, r"local\.memory_mb = 100 is outside"),
        ("oci", "AlmaLinux", r"oci must be a mapping"),
        ("surprise", 1, r"surprise is not a known key"),
    ],
)
def test_bad_key_names_file_and_key(tmp_path: Path, dotted: str, value: object, message: str) -> None:
    path = write(tmp_path, mutate(base(), dotted, value))
    with pytest.raises(ConfigError, match=message) as err:
        imagedef.load("custom", tmp_path)
    assert str(path) in err.value.message


def test_name_must_match_file(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump({**base(), "name": "other"}))
    with pytest.raises(ConfigError, match=r"name = 'other' does not match the file name 'custom'"):
        imagedef.load("custom", tmp_path)


def test_missing_definition_lists_the_available_ones(tmp_path: Path) -> None:
    write(tmp_path, base(), "one")
    with pytest.raises(ConfigError, match=r"nope\.yaml not found") as err:
        imagedef.load("nope", tmp_path)
    assert "one" in (err.value.hint or "")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\nversions: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml at line 3: "):
        imagedef.load("broken", tmp_path)


def test_bad_definition_name_is_refused_before_touching_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image definition name '../etc/passwd' is invalid"):
        imagedef.load("../etc/passwd", tmp_path)


def test_unset_base_images_load_but_report_unset() -> None:
    image = imagedef.parse(Path("/x/bare.yaml"), {**base(), "name": "bare", "oci": {}, "local": {}})
    assert not image.oci.is_set
    assert image.local.urls == ()
