"""Settings: declared once, loaded once from Invoke's config (invoke.yaml, INVOKE_* env, task flags) into frozen objects."""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from . import files
from .errors import ConfigError

OCID_RE = re.compile(r"^ocid1\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9-]*\.[a-z0-9]+$")
# RFC 1123 label, also OCI's hostname_label rule (letter first, max 63; we keep room for the "-NN" suffix).
CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$|^[a-z]$")
FREE_TIER_SHAPE = "VM.Standard.E2.1.Micro"
# Past this a plan is no longer a cluster this tool is meant for, and is refused before any node is named.
MAX_NODES = 1000
PROJECT_FILES = ("invoke.yaml", "invoke.yml")


def bounded(default: Any, low: float, high: float = math.inf) -> Any:
    """A numeric setting with its allowed range, declared with the setting itself."""
    return field(default=default, metadata={"range": (low, high)})


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
    ocpus: float = bounded(1.0, 0.125, 64)
    memory_gb: float = bounded(6.0, 1, 1024)
    boot_volume_gb: int = bounded(50, 47, 32768)  # OCI's minimum boot volume is 47 GB
    ssh_user: str = "opc"
    allow_paid: bool = False
    capacity_rounds: int = bounded(3, 1, 100)
    backoff_base_s: float = bounded(2.0, 0, 3600)
    backoff_max_s: float = bounded(60.0, 0, 3600)
    poll_interval_s: float = bounded(5.0, 0.01, 3600)
    launch_timeout_s: float = bounded(900.0, 1, 86400)
    # import-image: the Object Storage bucket the qcow2 is uploaded to (created private if missing) and whether
    # the uploaded object is deleted once the image exists (it counts against the 20 GB Always Free allowance).
    image_bucket: str = "nomadic-images"
    delete_uploaded_object: bool = False
    import_timeout_s: float = bounded(3600.0, 1, 86400)


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
    count: int = bounded(1, 1, MAX_NODES)
    servers: int = bounded(0, 0, MAX_NODES)
    cidr: str = "10.0.0.0/24"
    ssh_public_key: Path = Path("~/.ssh/id_ed25519.pub")
    ssh_private_key: Path = Path("~/.ssh/id_ed25519")
    wait_timeout_s: float = bounded(600.0, 0, 86400)


@dataclass(frozen=True)
class LocalSettings:
    qemu: str = "qemu-system-x86_64"
    accel: Accel = Accel.AUTO
    memory_mb: int = bounded(1024, 64, 1 << 20)
    cpus: int = bounded(1, 1, 256)
    ssh_port_base: int = bounded(2220, 1024, 65535)
    cluster_port_base: int = bounded(40000, 1024, 65535)
    ssh_user: str = "almalinux"
    boot_timeout_s: float = bounded(900.0, 1, 86400)
    # Direct kernel boot (images without a boot loader, e.g. the VM tests' image); empty: boot from the disk.
    kernel: str = ""
    initrd: str = ""
    append: str = ""


@dataclass(frozen=True)
class JobsSettings:
    """The services deployed on the cluster as Nomad jobs (jobs/README.md)."""

    # The subdomain delegated to the cluster's Knot servers, e.g. oracle.example.com (knotdns needs it).
    domain: str = ""
    # The addresses the DNS records name; empty: the client nodes' public IPs from the launch outputs.
    public_addresses: tuple[str, ...] = ()
    echo_port: int = 5678
    echo_text: str = "hello world"
    echo_count: int = 0  # 0: one per client node
    dns_port: int = 53
    dns_rate_limit: int = 200  # mod-rrl responses per second per flow
    http_port: int = 80
    web_count: int = 2
    deploy_timeout_s: float = 300.0
    # Who may reach the published ports on OCI (the public network security group's rule source).
    public_cidr: str = "0.0.0.0/0"
    echo_image: str = "hashicorp/http-echo:1.0"
    knot_image: str = "cznic/knot:3.3"
    nginx_image: str = "nginx:1.27-alpine"
    haproxy_image: str = "haproxy:2.8-alpine"


@dataclass(frozen=True)
class Settings:
    """Everything a task needs to know, fixed before any work starts."""

    root: Path
    oci: OciSettings = field(default_factory=OciSettings)
    build: BuildSettings = field(default_factory=BuildSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)

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
    "jobs": JobsSettings,
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


SCALARS = (str, int, float, bool)


def _shape_problem(value: Any, is_list: bool) -> str | None:
    """Why a raw value cannot be a setting's value (a mapping, a nested list), or None."""
    if isinstance(value, SCALARS):
        return None
    if is_list and isinstance(value, (list, tuple)):
        if all(isinstance(item, SCALARS) for item in value):
            return None
        return "expected a list of plain values"
    return "expected a list of plain values" if is_list else "expected a single value, not a list or mapping"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_problem(f: Any, value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    low, high = f.metadata.get("range", (-math.inf, math.inf))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
        return f"expected a number from {_num(low)} to {_num(high)}" if high != math.inf else f"expected at least {_num(low)}"
    return None


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
        value = raw[f.name]
        try:
            problem = _shape_problem(value, isinstance(f.default, tuple))
            if problem:
                raise ValueError(problem)
            values[f.name] = parse(value)
            problem = _range_problem(f, values[f.name])
            if problem:
                raise ValueError(problem)
        except (TypeError, ValueError, OverflowError) as exc:
            shown = value if isinstance(value, SCALARS) else type(value).__name__
            raise ConfigError(
                f"setting {name}.{f.name} = {shown!r} is invalid: {exc}",
                hint=f"fix it in invoke.yaml, {_env_name(name, f.name)} or the task flag",
            ) from None
    return cls(**values)


def _check_endpoint(endpoint: str) -> None:
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"setting oci.endpoint = {endpoint!r} is not an http(s) URL",
            hint="give a URL like https://iaas.us-ashburn-1.oraclecloud.com, or leave it empty for the region's own",
        )


def _check_size(cl: ClusterSettings, local: LocalSettings) -> None:
    """The count against the network and the local port ranges, before anything is planned or named."""
    usable = ipaddress.IPv4Network(cl.cidr).num_addresses - 3  # OCI keeps the first two and the last address
    if cl.count > usable:
        raise ConfigError(
            f"setting cluster.count = {cl.count} does not fit cluster.cidr = {cl.cidr} ({max(usable, 0)} usable addresses)",
            hint="lower --count or give a larger subnet",
        )
    for key, base in (("ssh_port_base", local.ssh_port_base), ("cluster_port_base", local.cluster_port_base)):
        if base + cl.count > 65535:
            raise ConfigError(
                f"setting local.{key} = {base} leaves no port for node {cl.count} (ports go up to 65535)",
                hint=f"lower local.{key} (INVOKE_LOCAL_{key.upper()})",
            )


def _require_network(setting: str, value: str, hint: str) -> None:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(f"setting {setting} = {value!r} is not an IPv4 network: {exc}", hint=hint) from None


def _check(settings: Settings) -> None:
    cl = settings.cluster
    if not CLUSTER_NAME_RE.match(cl.name):
        raise ConfigError(
            f"setting cluster.name = {cl.name!r} is not a valid hostname label",
            hint="use 1-42 lowercase letters, digits and '-', starting with a letter and not ending in '-'",
        )
    _require_network("cluster.cidr", cl.cidr, "give the subnet's CIDR block, e.g. 10.0.0.0/24")
    for key in ("compartment_id", "subnet_id"):
        value = getattr(settings.oci, key)
        if value and not OCID_RE.match(value):
            raise ConfigError(
                f"setting oci.{key} = {value!r} is not an OCID",
                hint="copy it from the OCI console; it looks like ocid1.<type>.oc1..<unique id>",
            )
    _check_endpoint(settings.oci.endpoint)
    _check_size(cl, settings.local)
    _check_jobs(settings.jobs)


DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def _check_jobs(jobs: JobsSettings) -> None:
    if jobs.domain and not DNS_NAME_RE.match(jobs.domain):
        raise ConfigError(
            f"setting jobs.domain = {jobs.domain!r} is not a domain name",
            hint="give the delegated subdomain in lowercase without a trailing dot, e.g. oracle.example.com",
        )
    for address in jobs.public_addresses:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ConfigError(
                f"setting jobs.public_addresses: {address!r} is not an IPv4 address",
                hint="list the nodes' public IPv4 addresses, comma-separated, or leave it empty to use the launch outputs",
            ) from None
    _require_network("jobs.public_cidr", jobs.public_cidr, "e.g. 0.0.0.0/0 for everyone or 198.51.100.0/24 for one network")
    for key in ("echo_port", "dns_port", "http_port"):
        port = getattr(jobs, key)
        if not 1 <= port <= 65535:
            raise ConfigError(f"setting jobs.{key} = {port} is not a port (1-65535)")
    for key in ("web_count", "dns_rate_limit"):
        if getattr(jobs, key) < 1:
            raise ConfigError(f"setting jobs.{key} = {getattr(jobs, key)} must be at least 1")
    if jobs.echo_count < 0:
        raise ConfigError(f"setting jobs.echo_count = {jobs.echo_count} must be 0 (one per client) or more")


def check_env(env: Mapping[str, str]) -> None:
    """An INVOKE_<SECTION>_<KEY> variable of one of our sections that names no setting is a typo: refuse it."""
    for var in sorted(env):
        for name, cls in SECTIONS.items():
            prefix = f"INVOKE_{name.upper()}_"
            if var.startswith(prefix) and var[len(prefix):].lower() not in {f.name for f in fields(cls)}:
                known = ", ".join(_env_name(name, f.name) for f in fields(cls))
                raise ConfigError(f"environment variable {var} names no setting", hint=f"known: {known}")


def _invoke_own_keys() -> set[str]:
    from invoke import Config

    return set(Config.global_defaults())


def check_project_file(root: Path) -> None:
    """invoke.yaml as Invoke will merge it: one mapping of known sections, each a mapping of plain values.

    Run before Invoke reads the file, which would answer a syntax error, a tab, a list or a scalar section with
    a traceback, and silently keep the last of two duplicate keys.
    """
    for name in PROJECT_FILES:
        path = root / name
        if not os.path.lexists(path):
            continue
        hint = f"fix {name}; invoke.example.yaml lists every setting"
        data = files.load_yaml(path, "settings file", hint)
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be a mapping of sections (oci:, build:, cluster:, local:)", hint=hint)
        own = _invoke_own_keys()
        for section, body in data.items():
            if section in own:
                continue
            if section not in SECTIONS:
                raise ConfigError(
                    f"{path}: unknown section {section!r}", hint=f"known sections: {', '.join(SECTIONS)}"
                )
            if body is not None and not isinstance(body, Mapping):
                raise ConfigError(
                    f"{path}: section {section} must be a mapping of settings, not {type(body).__name__}",
                    hint=f"write it as '{section}:' followed by indented 'key: value' lines",
                )
            for key, value in (body or {}).items():
                if isinstance(value, Mapping):
                    raise ConfigError(
                        f"setting {section}.{key} in {path} is a mapping; it takes a single value",
                        hint=f"see invoke.example.yaml for {section}.{key}",
                    )


def load(
    invoke_config: Mapping[str, Any],
    root: Path,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from Invoke's merged config; `overrides` ('section.key' -> value, None = not given) win."""
    check_env(env or {})
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
