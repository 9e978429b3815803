"""Packer, purely: version parsing, argv builders, the template context, rendered files and manifest parsing."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import imagefacts, qemuargs, render
from .config import Accel, Auth, Settings, Target, is_flex
from .errors import CommandFailed, ConfigError
from .imagedef import ImageDef

Version = tuple[int, int, int]

# Packer 1.7 moved builders into plugins (required_plugins + `packer init`) and the oracle plugin gained
# shape_config; Debian's 1.6.6 has neither.
PLUGINS_SINCE: Version = (1, 7, 0)
PLUGINS = {"oracle": "~> 1.1", "qemu": "~> 1.1"}
SOURCE_NAME = "almalinux"
SOURCES: dict[Target, str] = {Target.OCI: f"oracle-oci.{SOURCE_NAME}", Target.QEMU: f"qemu.{SOURCE_NAME}"}
BUILDER_TYPES: dict[Target, str] = {Target.OCI: "oracle-oci", Target.QEMU: "qemu"}
TEMPLATE = "image.pkr.hcl"
PLUGINS_FILE = "plugins.pkr.hcl"
MANIFEST = "manifest.json"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
SCRIPT_RE = re.compile(r"^[0-9]{2}-[a-z]+(-[a-z0-9]+)+\.sh$")
# The NoCloud seed's instance-id: cleanup and the image checks look for leftovers of it.
BUILD_INSTANCE_ID = imagefacts.BUILD_INSTANCE_ID

_VERSION_RE = re.compile(r"(?:Packer\s+)?v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> Version:
    """'Packer v1.6.6' (or '1.11.2', possibly followed by upgrade notes) -> (1, 6, 6)."""
    m = _VERSION_RE.search(text)
    if not m:
        raise CommandFailed(f"cannot read Packer's version from {text.strip()[:80]!r}", hint="is build.packer Packer?")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def has_plugins(version: Version) -> bool:
    return version >= PLUGINS_SINCE


def show_version(version: Version) -> str:
    return ".".join(map(str, version))


# ---- argv builders -------------------------------------------------------------------------------------------


def version_argv(packer: str) -> list[str]:
    return [packer, "version"]


def init_argv(packer: str) -> list[str]:
    return [packer, "init", "."]


def validate_argv(packer: str, only: list[str] | None = None) -> list[str]:
    argv = [packer, "validate"]
    if only:
        argv.append("-only=" + ",".join(only))
    return argv + ["."]


def build_argv(packer: str, target: Target) -> list[str]:
    # -color=false: the output is streamed into a log file too; -on-error=cleanup never leaves a VM running.
    return [packer, "build", "-color=false", "-on-error=cleanup", f"-only={SOURCES[target]}", "."]


_NOISE = re.compile(r"^(on .* line \d+:|\(source code not available\)|This was checked by .*|Error: \d+ error\(s\) occurred:)$")


def validate_errors(output: str) -> list[str]:
    """The meaningful lines of `packer validate`'s complaint, without HCL's location boilerplate."""
    lines = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line or _NOISE.match(line):
            continue
        line = line.removeprefix("* ").removeprefix("Error: ")
        if line not in lines:
            lines.append(line)
    return lines


# ---- template context ----------------------------------------------------------------------------------------


def cpu_model(accelerator: str) -> str:
    return qemuargs.cpu_model(Accel(accelerator))




def tags(image: ImageDef) -> dict[str, str]:
    return {
        "built-by": "nomadic",
        "nomadic-image": image.name,
        "docker-ce-version": image.versions.docker_ce,
        "nomad-version": image.versions.nomad,
        "consul-version": image.versions.consul,
    }


def build_context(
    settings: Settings,
    image: ImageDef,
    version: Version,
    accelerator: str,
    build_public_key: str,
) -> dict[str, Any]:
    """Everything the templates use, from settings and the image definition; pure."""
    oci = settings.oci
    flex = is_flex(oci.shape)
    return {
        "banner": f"Rendered by nomadic for image definition {image.name}; edit packer/ or scripts/, not this file.",
        "image": image,
        "facts": imagefacts,
        "tags": tags(image),
        "plugins": PLUGINS,
        "packer_version": show_version(version),
        "with_plugins": has_plugins(version),
        "oci": {
            "instance_principal": oci.auth == Auth.INSTANCE_PRINCIPAL,
            "config_file": str(oci.config_file.expanduser()),
            "profile": oci.profile,
            "region": oci.region,
            "availability_domain": oci.availability_domains[0] if oci.availability_domains else "",
            "compartment_id": oci.compartment_id,
            "subnet_id": oci.subnet_id,
            "shape": oci.shape,
            "flex": flex and has_plugins(version),
            "flex_unsupported": flex and not has_plugins(version),
            "ocpus": oci.ocpus,
            "memory_gb": oci.memory_gb,
            "boot_volume_gb": oci.boot_volume_gb,
            "ssh_user": oci.ssh_user,
        },
        "qemu": {
            "accelerator": accelerator,
            "cpu_model": cpu_model(accelerator),
            "ssh_user": settings.local.ssh_user,
        },
        "seed": {
            "build_public_key": build_public_key,
            "instance_id": BUILD_INSTANCE_ID,
            "hostname": "nomadic-build",
        },
        "scripts": scripts(),
        "rpms": {
            "docker-ce": image.versions.docker_ce,
            "nomad": image.versions.nomad,
            "consul": image.versions.consul,
        },
        "swap_mb": image.swap_mb,
    }


def scripts(directory: Path = SCRIPTS_DIR) -> list[str]:
    """The provisioning scripts in run order; a misnamed one is an error rather than silently skipped."""
    names = sorted(p.name for p in directory.glob("*.sh"))
    for name in names:
        if not SCRIPT_RE.match(name):
            raise ConfigError(f"{directory / name}: provisioning scripts are named NN-verb-noun.sh")
    return names


def render_files(ctx: Mapping[str, Any]) -> dict[str, str]:
    """Every rendered file of the build directory (relative path -> text), scripts and keys aside; pure."""
    files: dict[str, str] = {TEMPLATE: render.render(f"{TEMPLATE}.j2", ctx)}
    if ctx["with_plugins"]:
        files[PLUGINS_FILE] = render.render(f"{PLUGINS_FILE}.j2", ctx)
    seed_ctx = {**ctx, **ctx["seed"]}
    files["seed/user-data"] = render.render("seed/user-data.j2", seed_ctx)
    files["seed/meta-data"] = render.render("seed/meta-data.j2", seed_ctx)
    f = "nomadic-files"
    files[f"{f}/systemd/consul.service"] = render.render("files/consul.service.j2", ctx)
    files[f"{f}/systemd/nomad.service"] = render.render("files/nomad.service.j2", ctx)
    for name, ports in imagefacts.FIREWALLD_SERVICES.items():
        files[f"{f}/firewalld/{name}.xml"] = render.render(
            "files/firewalld-service.xml.j2", {**ctx, "service": name, "ports": ports}
        )
    files[f"{f}/tmpfiles.d/nomadic.conf"] = render.render("files/tmpfiles.conf.j2", ctx)
    files[f"{f}/sysctl.d/90-nomadic.conf"] = render.render("files/sysctl.conf.j2", ctx)
    files[f"{f}/modules-load.d/nomadic.conf"] = render.render("files/modules-load.conf.j2", ctx)
    files[f"{f}/config-dirs.txt"] = render.render("files/config-dirs.txt.j2", ctx)
    files[f"{f}/package-defaults.txt"] = render.render("files/package-defaults.txt.j2", ctx)
    files[f"{f}/expected.txt"] = render.render("files/expected.txt.j2", ctx)
    return files


# ---- manifest ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """One build from Packer's manifest: what it produced."""

    builder_type: str
    artifact_id: str
    files: tuple[str, ...]
    custom_data: dict[str, str]


def parse_manifest(path: Path, target: Target) -> Built:
    """The target's build from the manifest's last run (the post-processor appends every run to the file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandFailed(f"Packer wrote no manifest at {path}", hint="see the build log above") from None
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"Packer's manifest {path} is not JSON ({exc})") from None
    run = data.get("last_run_uuid")
    wanted = BUILDER_TYPES[target]
    builds = [
        b
        for b in data.get("builds", [])
        if isinstance(b, dict) and b.get("packer_run_uuid") == run and b.get("builder_type") == wanted
    ]
    if len(builds) != 1:
        raise CommandFailed(
            f"Packer's manifest {path} has {len(builds)} {wanted} builds for its last run, expected 1",
            hint="delete the manifest and build again",
        )
    b = builds[0]
    return Built(
        builder_type=wanted,
        artifact_id=str(b.get("artifact_id", "")),
        files=tuple(str(f.get("name", "")) for f in b.get("files") or [] if isinstance(f, dict)),
        custom_data={str(k): str(v) for k, v in (b.get("custom_data") or {}).items()},
    )
