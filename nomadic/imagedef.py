"""Image definitions: images/<name>.yaml loaded and checked into a frozen object."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from .config import OCID_RE
from . import files
from .errors import ConfigError

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
# OCI image display names: letters, digits, '-', '_' and '.'; we keep room for the timestamp Packer appends.
IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
DISK_SIZE_RE = re.compile(r"^[1-9][0-9]*[MG]$")


@dataclass(frozen=True)
class Versions:
    docker_ce: str
    nomad: str
    consul: str


@dataclass(frozen=True)
class OciBase:
    base_image_ocid: str
    operating_system: str
    operating_system_version: str
    display_name_search: str
    # What `import-image --source almalinux` downloads: AlmaLinux's own OCI qcow2, with a pinned digest or the
    # URL of AlmaLinux's CHECKSUM file (the entry for the URL's file name is used).
    import_url: str = ""
    import_checksum: str = ""
    import_checksum_url: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.base_image_ocid or self.operating_system)


@dataclass(frozen=True)
class LocalBase:
    urls: tuple[str, ...]
    checksum: str
    checksum_url: str
    disk_size: str
    memory_mb: int
    cpus: int

    @property
    def packer_checksum(self) -> str:
        """Packer's iso_checksum: the pinned digest, or 'file:<url>' for Packer to fetch and match."""
        return self.checksum or f"file:{self.checksum_url}"


@dataclass(frozen=True)
class ImageDef:
    name: str
    path: Path
    description: str
    image_name: str
    versions: Versions
    extra_packages: tuple[str, ...]
    swap_mb: int
    oci: OciBase
    local: LocalBase


class _Reader:
    """Typed access to one YAML mapping; every error names the file and the dotted key."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.path}: {self.prefix}{key} {problem}", hint=hint or "see images/almalinux9.yaml")

    def known(self, keys: set[str]) -> None:
        for key in self.data:
            if key not in keys:
                raise self.fail(str(key), "is not a known key", hint=f"known keys: {', '.join(sorted(keys))}")

    def sub(self, key: str, required: bool = True) -> "_Reader":
        value = self.data.get(key)
        if value is None and not required:
            value = {}
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a mapping")
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def text(self, key: str, pattern: re.Pattern[str] | None = None, required: bool = True, what: str = "") -> str:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(key, "is missing or empty")
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(key, f"must be a string, not {type(value).__name__}")
        text = str(value).strip()
        if pattern is not None and not pattern.match(text):
            raise self.fail(key, f"= {text!r} is not {what or 'valid'}")
        return text

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"must be a whole number between {minimum} and {maximum}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"= {value} is outside {minimum}..{maximum}")
        return value

    def strings(self, key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(key, "must be a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not pattern.match(item.strip()):
                raise self.fail(f"{key}[{i}]", f"= {item!r} is not {what}")
            out.append(item.strip())
        return tuple(out)


def path_for(name: str, images_dir: Path | None = None) -> Path:
    return (images_dir or IMAGES_DIR) / f"{name}.yaml"


def available(images_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (images_dir or IMAGES_DIR).glob("*.yaml"))


def load(name: str, images_dir: Path | None = None) -> ImageDef:
    """Read and check images/<name>.yaml; any problem is a ConfigError naming the file and the key."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"image definition name {name!r} is invalid",
            hint="use lowercase letters, digits, '-' and '_' (build.image or --image)",
        )
    path = path_for(name, images_dir)
    if not path.is_file():
        choices = ", ".join(available(images_dir)) or "none"
        raise ConfigError(f"image definition {path} not found", hint=f"set build.image or --image to one of: {choices}")
    data = files.load_yaml(path, "image definition", f"fix {path}; images/almalinux9.yaml shows every key")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: must be a mapping of keys", hint="see images/almalinux9.yaml")
    return parse(path, data)


def parse(path: Path, data: Mapping[str, Any]) -> ImageDef:
    top = _Reader(path, data)
    top.known({"name", "description", "image_name", "versions", "extra_packages", "swap_mb", "oci", "local"})
    name = top.text("name", NAME_RE, what="a lowercase name")
    if name != path.stem:
        raise top.fail("name", f"= {name!r} does not match the file name {path.stem!r}", hint="rename one of them")

    v = top.sub("versions")
    v.known({"docker_ce", "nomad", "consul"})
    versions = Versions(
        docker_ce=v.text("docker_ce", VERSION_RE, what="a version like 28.5.1"),
        nomad=v.text("nomad", VERSION_RE, what="a version like 1.10.3"),
        consul=v.text("consul", VERSION_RE, what="a version like 1.21.4"),
    )

    o = top.sub("oci", required=False)
    o.known({"base_image_ocid", "base_image_filter", "import"})
    imp = o.sub("import", required=False)
    imp.known({"url", "checksum", "checksum_url"})
    import_url = imp.text("url", re.compile(r"^https?://\S+\.qcow2$"), required=False, what="an http(s) URL of a .qcow2")
    import_checksum = imp.text("checksum", CHECKSUM_RE, required=False, what="sha256:<64 hex digits> or sha512:<128>")
    import_checksum_url = imp.text("checksum_url", re.compile(r"^https?://\S+$"), required=False, what="an http(s) URL")
    if import_url and bool(import_checksum) == bool(import_checksum_url):
        raise imp.fail(
            "checksum", "and checksum_url: give exactly one", hint="a pinned sha256 digest, or the URL of the CHECKSUM file"
        )
    f = o.sub("base_image_filter", required=False)
    f.known({"operating_system", "operating_system_version", "display_name_search"})
    ocid = o.text("base_image_ocid", required=False)
    if ocid and not OCID_RE.match(ocid):
        raise o.fail("base_image_ocid", f"= {ocid!r} is not an OCID", hint="it looks like ocid1.image.oc1.<region>.<id>")
    search = f.text("display_name_search", required=False)
    if search:
        try:
            re.compile(search)
        except re.error as exc:
            raise f.fail("display_name_search", f"is not a regular expression ({exc})") from None
    oci = OciBase(
        base_image_ocid=ocid,
        operating_system=f.text("operating_system", required=False),
        operating_system_version=f.text("operating_system_version", required=False),
        display_name_search=search,
        import_url=import_url,
        import_checksum=import_checksum,
        import_checksum_url=import_checksum_url,
    )

    loc = top.sub("local", required=False)
    loc.known({"urls", "checksum", "checksum_url", "disk_size", "memory_mb", "cpus"})
    urls = loc.strings("urls", re.compile(r"^(https?|file)://\S+$"), "an http(s):// or file:// URL")
    checksum = loc.text("checksum", CHECKSUM_RE, required=False, what="sha256:<64 hex digits> or sha512:<128>")
    checksum_url = loc.text("checksum_url", re.compile(r"^https?://\S+$"), required=False, what="an http(s) URL")
    if urls and bool(checksum) == bool(checksum_url):
        raise loc.fail(
            "checksum", "and checksum_url: give exactly one", hint="a pinned sha256 digest, or the URL of the CHECKSUM file"
        )
    local = LocalBase(
        urls=urls,
        checksum=checksum,
        checksum_url=checksum_url,
        disk_size=loc.text("disk_size", DISK_SIZE_RE, required=False, what="a size like 20G") or "20G",
        memory_mb=loc.integer("memory_mb", 1024, 65536) if "memory_mb" in loc.data else 2048,
        cpus=loc.integer("cpus", 1, 64) if "cpus" in loc.data else 2,
    )

    return ImageDef(
        name=name,
        path=path,
        description=top.text("description", required=False),
        image_name=top.text("image_name", IMAGE_NAME_RE, what="a name of letters, digits, '.', '_' or '-'"),
        versions=versions,
        extra_packages=top.strings("extra_packages", PACKAGE_RE, "an RPM package name"),
        swap_mb=top.integer("swap_mb", 0, 16384) if "swap_mb" in top.data else 1024,
        oci=oci,
        local=local,
    )
