"""Settings: declared once, loaded once from Invoke's config (invoke.yaml, INVOKE_* env, task flags) into frozen objects."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError

OCID_RE = re.compile(r"^ocid1\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9-]*\.[a-z0-9]+$")
# RFC 1123 label, also OCI's hostname_label rule (letter first, max 63; we keep room for the "-NN" suffix).
CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$|^[a-z]$")
FREE_TIER_SHAPE = "VM.Standard.E2.1.Micro"


def is_flex(shape: str) -> bool:
    """Flexible shapes take OCPUs and memory (shape_config); fixed ones must not be given any."""
    return shape.endswith("Flex")


class Target(str, enum.Enum):
    """Where build-image bakes."""

    OCI = "oci"
    QEMU = "qemu"


class Provider(str, enum.Enum):
    """Where launch/status/destroy put the nodes."""

    OCI = "oci"
    LOCAL = "local"


class Auth(str, enum.Enum):
    """How the OCI SDK and Packer authenticate."""

    API_KEY = "api_key"
    INSTANCE_PRINCIPAL = "instance_principal"


class Accel(str, enum.Enum):
    """QEMU accelerator choice; AUTO means KVM when /dev/kvm opens, TCG otherwise."""

    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True)
class OciSettings:
    config_file: Path = Path("~/.oci/config")
    profile: str = "DEFAULT"
    auth: Auth = Auth.API_KEY
    region: str = ""
    endpoint: str = ""
    compartment_id: str = ""
    subnet_id: str = ""
    availability_domains: tuple[str, ...] = ()
    fault_domains: tuple[str, ...] = ()
    shape: str = FREE_TIER_SHAPE
    ocpus: float = 1.0
    memory_gb: float = 6.0
    boot_volume_gb: int = 50
    ssh_user: str = "opc"
    allow_paid: bool = False
    capacity_rounds: int = 3
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    poll_interval_s: float = 5.0
    launch_timeout_s: float = 900.0


@dataclass(frozen=True)
class BuildSettings:
    target: Target = Target.OCI
    image: str = "almalinux9"
    packer: str = "packer"
    # The agents whose own validators `invoke validate` runs over the rendered configs (PATH name or path).
    consul: str = "consul"
    nomad: str = "nomad"


@dataclass(frozen=True)
class ClusterSettings:
    name: str = "nomadic"
    provider: Provider = Provider.OCI
    datacenter: str = "dc1"
    count: int = 1
    servers: int = 0
    cidr: str = "10.0.0.0/24"
    ssh_public_key: Path = Path("~/.ssh/id_ed25519.pub")
    ssh_private_key: Path = Path("~/.ssh/id_ed25519")
    wait_timeout_s: float = 600.0


@dataclass(frozen=True)
class LocalSettings:
    qemu: str = "qemu-system-x86_64"
    accel: Accel = Accel.AUTO
    memory_mb: int = 1024
    cpus: int = 1
    ssh_port_base: int = 2220
    cluster_port_base: int = 40000
    ssh_user: str = "almalinux"
    boot_timeout_s: float = 900.0
    # Direct kernel boot (images without a boot loader, e.g. the VM tests' image); empty: boot from the disk.
    kernel: str = ""
    initrd: str = ""
    append: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything a task needs to know, fixed before any work starts."""

    root: Path
    oci: OciSettings = field(default_factory=OciSettings)
    build: BuildSettings = field(default_factory=BuildSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    local: LocalSettings = field(default_factory=LocalSettings)

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def cluster_dir(self) -> Path:
        return self.build_dir / self.cluster.name

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets" / self.cluster.name


SECTIONS: dict[str, type] = {
    "oci": OciSettings,
    "build": BuildSettings,
    "cluster": ClusterSettings,
    "local": LocalSettings,
}


def _to_yaml_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(value)
    return value


def defaults() -> dict[str, dict[str, Any]]:
    """Invoke's config defaults: every key must exist for INVOKE_* env vars to reach it.

    Each is None so that Invoke passes env values through as text (it would cast to the default's type
    and raise a traceback on bad input); the real defaults and parsing live in the dataclasses above.
    """
    return {name: {f.name: None for f in fields(cls)} for name, cls in SECTIONS.items()}


def _env_name(section: str, key: str) -> str:
    return f"INVOKE_{section.upper()}_{key.upper()}"


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _parse_tuple(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (list, tuple)):
        return tuple(str(x).strip() for x in raw if str(x).strip())
    return tuple(part.strip() for part in str(raw).split(",") if part.strip())


def _parser_for(default: Any) -> Callable[[Any], Any]:
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, enum.Enum):
        enum_cls = type(default)

        def parse_enum(raw: Any) -> Any:
            try:
                return enum_cls(str(raw).strip().lower())
            except ValueError:
                allowed = ", ".join(m.value for m in enum_cls)
                raise ValueError(f"expected one of {allowed}") from None

        return parse_enum
    if isinstance(default, int):
        return lambda raw: int(str(raw).strip())
    if isinstance(default, float):
        return lambda raw: float(str(raw).strip())
    if isinstance(default, Path):
        return lambda raw: Path(str(raw)).expanduser()
    if isinstance(default, tuple):
        return _parse_tuple
    return lambda raw: "" if raw is None else str(raw).strip()


def _section(name: str, cls: type, raw: Mapping[str, Any]) -> Any:
    values: dict[str, Any] = {}
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown setting {name}.{key}",
                hint=f"known {name} settings: {', '.join(sorted(known))}; see invoke.example.yaml",
            )
    for f in fields(cls):
        parse = _parser_for(f.default)
        if raw.get(f.name) is None:
            values[f.name] = parse(_to_yaml_default(f.default))
            continue
        try:
            values[f.name] = parse(raw[f.name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"setting {name}.{f.name} = {raw[f.name]!r} is invalid: {exc}",
                hint=f"fix it in invoke.yaml, {_env_name(name, f.name)} or the task flag",
            ) from None
    return cls(**values)


def _check(settings: Settings) -> None:
    cl = settings.cluster
    if not CLUSTER_NAME_RE.match(cl.name):
        raise ConfigError(
            f"setting cluster.name = {cl.name!r} is not a valid hostname label",
            hint="use 1-42 lowercase letters, digits and '-', starting with a letter and not ending in '-'",
        )
    try:
        ipaddress.IPv4Network(cl.cidr, strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"setting cluster.cidr = {cl.cidr!r} is not an IPv4 network: {exc}",
            hint="give the subnet's CIDR block, e.g. 10.0.0.0/24",
        ) from None
    for key in ("compartment_id", "subnet_id"):
        value = getattr(settings.oci, key)
        if value and not OCID_RE.match(value):
            raise ConfigError(
                f"setting oci.{key} = {value!r} is not an OCID",
                hint="copy it from the OCI console; it looks like ocid1.<type>.oc1..<unique id>",
            )
    positive = {
        "local.memory_mb": settings.local.memory_mb,
        "local.cpus": settings.local.cpus,
        "oci.boot_volume_gb": settings.oci.boot_volume_gb,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"setting {key} = {value} must be at least 1")


def load(invoke_config: Mapping[str, Any], root: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from Invoke's merged config; `overrides` ('section.key' -> value, None = not given) win."""
    merged: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = invoke_config.get(name) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"setting {name} must be a mapping of keys", hint="see invoke.example.yaml")
        merged[name] = dict(section)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section_name, key = dotted.split(".", 1)
        merged[section_name][key] = value
    settings = Settings(
        root=root,
        **{name: _section(name, cls, merged[name]) for name, cls in SECTIONS.items()},
    )
    _check(settings)
    return settings


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy with some typed values replaced (tests and internal callers)."""
    changes = {name: replace(getattr(settings, name), **values) for name, values in sections.items()}
    return replace(settings, **changes)
