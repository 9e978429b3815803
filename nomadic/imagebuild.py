"""build-image, render and validate for the Packer templates, and verify-image: the orchestration around Packer."""

from __future__ import annotations

import configparser
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import accel, artifacts, imagedef, packer, proc
from .fsutil import sha256_file
from .config import Auth, Settings, Target
from .errors import CommandFailed, ConfigError, Interrupted, ToolMissing
from .imagedef import ImageDef

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Packer's cd_files shells out to one of these to make the NoCloud seed ISO.
ISO_TOOLS = ("xorriso", "mkisofs", "genisoimage", "hdiutil", "oscdimg")


def build_dir(settings: Settings, image: str | None = None) -> Path:
    return settings.build_dir / "packer" / (image or settings.build.image)


def _say(text: str) -> None:
    print(f"image: {text}", file=sys.stderr, flush=True)


# ---- environment probes --------------------------------------------------------------------------------------


def packer_version(settings: Settings) -> packer.Version:
    """Ask the configured Packer for its version (ToolMissing with how to install it when absent)."""
    try:
        result = proc.run(packer.version_argv(settings.build.packer), step="packer version", timeout=60)
    except ToolMissing:
        raise ToolMissing(
            f"Packer not found: build.packer = {settings.build.packer!r} is not on PATH",
            hint=proc.INSTALL_HINTS["packer"] + "; or set build.packer (INVOKE_BUILD_PACKER) to its path",
        ) from None
    return packer.parse_version(result.stdout + result.stderr)


def accelerator(settings: Settings, probe: bool = False) -> str:
    """KVM or TCG for the qemu build VM; a real build probes that KVM runs a guest (rendering alone does not)."""
    return accel.choose(settings.local, settings.build_dir / "packer", probe=probe).value


# ---- checks before Packer runs -------------------------------------------------------------------------------


def oci_problems(settings: Settings, image: ImageDef, version: packer.Version | None) -> list[ConfigError]:
    """Why the oracle-oci source cannot be validated or built with these settings (empty: it can)."""
    oci = settings.oci
    problems: list[ConfigError] = []
    if oci.auth == Auth.API_KEY:
        problems += _oci_config_problems(settings, version)
    if not image.oci.is_set:
        problems.append(
            ConfigError(
                f"{image.path}: the OCI base image is unset (oci.base_image_ocid and oci.base_image_filter are empty)",
                hint="give the AlmaLinux 9 image's OCID, or a filter on operating_system 'AlmaLinux' and version '9'",
            )
        )
    if not oci.subnet_id:
        problems.append(
            ConfigError(
                "setting oci.subnet_id is empty: the Packer build instance needs a subnet",
                hint="set oci.subnet_id (INVOKE_OCI_SUBNET_ID) to a subnet with a route to the internet (dnf)",
            )
        )
    if not oci.availability_domains:
        problems.append(
            ConfigError(
                "setting oci.availability_domains is empty: Packer needs the build instance's availability domain",
                hint="set it (INVOKE_OCI_AVAILABILITY_DOMAINS), e.g. 'Uocm:EU-FRANKFURT-1-AD-1'; see `oci iam availability-domain list`",
            )
        )
    if version is not None and packer.is_flex(oci.shape) and not packer.has_plugins(version):
        problems.append(
            ConfigError(
                f"setting oci.shape = {oci.shape} is a Flex shape, which needs shape_config: Packer "
                f"{packer.show_version(version)} lacks it",
                hint="use Packer >= 1.7 or a fixed shape such as VM.Standard.E2.1.Micro",
            )
        )
    return problems


def _oci_config_problems(settings: Settings, version: packer.Version | None) -> list[ConfigError]:
    oci = settings.oci
    cfg_path = oci.config_file.expanduser()
    fix = "create it with `oci setup config`, point oci.config_file (INVOKE_OCI_CONFIG_FILE) at yours, or set oci.auth = instance_principal on an OCI instance"
    if not cfg_path.is_file():
        return [
            ConfigError(
                f"OCI config file {cfg_path} not found (settings oci.config_file = {cfg_path}, oci.profile = {oci.profile})",
                hint=fix,
            )
        ]
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(cfg_path, encoding="utf-8")
    except configparser.Error as exc:
        # Only the error's kind and line: its text can quote the line, and the file holds key material.
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        return [ConfigError(f"OCI config file {cfg_path} is not a valid INI file ({type(exc).__name__}{where})", hint=fix)]
    # configparser folds [DEFAULT] into every section, exactly as the OCI SDK reads it.
    if oci.profile == "DEFAULT":
        profile = dict(parser.defaults())
    elif parser.has_section(oci.profile):
        profile = dict(parser.items(oci.profile))
    else:
        profile = {}
    if not profile:
        known = ", ".join((["DEFAULT"] if parser.defaults() else []) + parser.sections()) or "none"
        return [
            ConfigError(
                f"profile {oci.profile!r} not found in OCI config file {cfg_path} (settings oci.profile, oci.config_file)",
                hint=f"profiles in that file: {known}; set oci.profile (INVOKE_OCI_PROFILE)",
            )
        ]
    missing = [k for k in ("user", "fingerprint", "tenancy", "key_file") if not profile.get(k)]
    if missing:
        return [ConfigError(f"profile {oci.profile!r} in {cfg_path} lacks {', '.join(missing)}", hint=fix)]
    if not (oci.region or profile.get("region")):
        return [ConfigError(f"profile {oci.profile!r} in {cfg_path} has no region and oci.region is empty")]
    key = Path(profile["key_file"]).expanduser()
    if not key.is_absolute():
        key = cfg_path.parent / key
    if not key.is_file():
        return [ConfigError(f"key_file {key} of profile {oci.profile!r} in {cfg_path} not found", hint=fix)]
    if version is not None and not packer.has_plugins(version):
        head = key.read_text(encoding="utf-8", errors="replace")[:64]
        if "BEGIN PRIVATE KEY" in head or "BEGIN ENCRYPTED PRIVATE KEY" in head:
            return [
                ConfigError(
                    f"Packer {packer.show_version(version)} reads only PKCS#1 API keys ('BEGIN RSA PRIVATE KEY'); "
                    f"{key} is PKCS#8",
                    hint=f"convert a copy: openssl rsa -in {key} -traditional -out {key.with_suffix('.rsa.pem')} "
                    "and point key_file at it, or use Packer >= 1.7",
                )
            ]
    return []


def qemu_problems(image: ImageDef) -> list[ConfigError]:
    if not image.local.urls:
        return [
            ConfigError(
                f"{image.path}: local.urls is empty: the qemu target needs the AlmaLinux 9 GenericCloud qcow2",
                hint="add its URL and checksum (or checksum_url) under local:",
            )
        ]
    return []


def _qemu_tools(settings: Settings) -> None:
    proc.which(settings.local.qemu)
    proc.which("qemu-img")
    if not any(shutil.which(t) for t in ISO_TOOLS):
        raise ToolMissing(
            "no ISO tool found for the NoCloud seed (Packer's cd_files needs xorriso, mkisofs or genisoimage)",
            hint="install one: 'apt-get install xorriso' or 'dnf install xorriso'",
        )


# ---- rendering -----------------------------------------------------------------------------------------------


def _build_key(directory: Path) -> str:
    """The qemu build's login key (made once per build dir, mode 0600); returns the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = directory / "build_key", directory / "build_key.pub"
    if not (private.is_file() and public.is_file()):
        directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        public.write_text(pub.decode() + " nomadic-build\n", encoding="utf-8")
    return public.read_text(encoding="utf-8").strip()


def _render(settings: Settings, image: ImageDef, version: packer.Version, probe: bool = False) -> list[Path]:
    out = build_dir(settings, image.name)
    ctx = packer.build_context(settings, image, version, accelerator(settings, probe), _build_key(out / "ssh"))
    files = packer.render_files(ctx)
    # Rendered trees are rewritten whole; Packer's output, manifest, logs and cache stay.
    for sub in ("nomadic-files", "seed", "scripts"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / packer.PLUGINS_FILE).unlink(missing_ok=True)
    written: list[Path] = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    (out / "scripts").mkdir()
    for name in ctx["scripts"]:
        dst = out / "scripts" / name
        shutil.copyfile(packer.SCRIPTS_DIR / name, dst)
        dst.chmod(0o755)
        written.append(dst)
    return written


def render_templates(settings: Settings) -> list[Path]:
    """Render the Packer template (both sources), seed, files and scripts into build/packer/<image>/."""
    image = imagedef.load(settings.build.image)
    try:
        version = packer_version(settings)
    except ToolMissing:
        version = (1, 6, 6)
        _say(f"{settings.build.packer} not found; rendering for Packer < 1.7 (no plugins file)")
    paths = _render(settings, image, version)
    _say(f"rendered {len(paths)} files into {build_dir(settings, image.name)}")
    return paths


def _packer_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["PACKER_CACHE_DIR"] = str(settings.build_dir / "packer" / "cache")  # the base qcow2 is downloaded once
    env["CHECKPOINT_DISABLE"] = "1"  # no version check calls home
    env["PACKER_NO_COLOR"] = "1"
    return env


def _init_and_validate(settings: Settings, version: packer.Version, only: list[str], log: Path | None) -> None:
    cwd = build_dir(settings)
    env = _packer_env(settings)
    if packer.has_plugins(version):
        proc.run(packer.init_argv(settings.build.packer), cwd=cwd, env=env, step="packer init", log=log,
                 stream=sys.stderr)
    argv = packer.validate_argv(settings.build.packer, only)
    result = proc.run(argv, cwd=cwd, env=env, step="packer validate", log=log, check=False)
    if result.exit_code != 0:
        errors = packer.validate_errors(result.stdout + result.stderr)
        where = f"; log: {log}" if log else ""
        raise CommandFailed(
            f"packer validate failed with exit code {result.exit_code}: {'; '.join(errors) or 'no message'}",
            hint=f"command: (cd {cwd} && {proc.show(argv)}){where}",
        )


def validate_templates(settings: Settings) -> None:
    """`packer validate` on the rendered template: both sources, or only qemu when OCI cannot be checked offline."""
    image = imagedef.load(settings.build.image)
    version = packer_version(settings)
    if not (build_dir(settings, image.name) / packer.TEMPLATE).is_file():
        _render(settings, image, version)
    only: list[str] = []
    if settings.oci.auth == Auth.INSTANCE_PRINCIPAL:
        skipped = ["the oracle-oci source uses instance principals, which need an OCI instance's metadata service"]
    else:
        skipped = [p.message for p in oci_problems(settings, image, version)]
    qemu_skip = [p.message for p in qemu_problems(image)]
    if skipped and qemu_skip:
        raise ConfigError(f"neither Packer source can be validated: {skipped[0]}; {qemu_skip[0]}")
    if skipped:
        only = [packer.SOURCES[Target.QEMU]]
        _say(f"validating only the qemu source: {skipped[0]}")
    elif qemu_skip:
        only = [packer.SOURCES[Target.OCI]]
        _say(f"validating only the oracle-oci source: {qemu_skip[0]}")
    _init_and_validate(settings, version, only, log=None)
    _say(f"packer validate passed ({', '.join(only) if only else 'both sources'})")


# ---- build ---------------------------------------------------------------------------------------------------


def build(settings: Settings, dry_run: bool) -> None:
    """Render, init, validate and (unless dry_run) build the image for build.target; record the artifact."""
    target = settings.build.target
    source = packer.SOURCES[target]
    version = packer_version(settings)
    image = imagedef.load(settings.build.image)
    problems = oci_problems(settings, image, version) if target == Target.OCI else qemu_problems(image)
    if problems:
        raise problems[0]
    # Only a real qemu build pays for the KVM probe: where /dev/kvm opens but hangs guests, it must get TCG.
    _render(settings, image, version, probe=target == Target.QEMU and not dry_run)
    out = build_dir(settings, image.name)
    log = out / f"packer-{target.value}.log"
    log.write_text("", encoding="utf-8")
    _say(f"Packer {packer.show_version(version)}, image definition {image.name}, target {target.value}")
    _init_and_validate(settings, version, [source], log=log)
    if dry_run:
        _say(f"dry run: {out / packer.TEMPLATE} rendered and validated for {source}; not building")
        return
    if target == Target.QEMU:
        _qemu_tools(settings)
    else:
        _say(f"base image: {find_base_image(settings, image)}")
    started = datetime.now(timezone.utc)
    _say(f"packer build -only={source} (output streams below; log: {log})")
    try:
        proc.run(
            packer.build_argv(settings.build.packer, target),
            cwd=out,
            env=_packer_env(settings),
            stream=sys.stderr,
            log=log,
            step=f"packer build ({target.value})",
        )
    except Interrupted:
        raise Interrupted(f"packer build ({target.value}) interrupted by Ctrl-C", hint=_left_behind(settings, target, log)) from None
    built = packer.parse_manifest(out / packer.MANIFEST, target)
    record = _artifact(settings, target, out, built, started)
    where = artifacts.record(settings, target, image.name, record)
    _say(f"built {record.get('image_id') or record.get('path')}; recorded in {where}")


def find_base_image(settings: Settings, image: ImageDef) -> str:
    """Look the OCI base image up the way Packer will (so 'not found' fails in seconds, not after a launch).

    By OCID: that image must exist. By filter: an AVAILABLE image in the build compartment (platform images are
    visible from any) with that operating system and version whose display name matches the regex.
    """
    import re

    import oci

    from . import ociclient
    from .errors import CloudError

    session = ociclient.session(settings)
    client = ociclient.compute(session)
    compartment = settings.oci.compartment_id or session.tenancy_id
    base = image.oci
    try:
        if base.base_image_ocid:
            found = client.get_image(base.base_image_ocid).data
            return f"{found.display_name} ({found.id})"
        kwargs = {"lifecycle_state": "AVAILABLE", "sort_by": "TIMECREATED", "sort_order": "DESC"}
        if base.operating_system:
            kwargs["operating_system"] = base.operating_system
        if base.operating_system_version:
            kwargs["operating_system_version"] = base.operating_system_version
        images = oci.pagination.list_call_get_all_results(client.list_images, compartment, **kwargs).data
    except oci.exceptions.ServiceError as exc:
        if exc.status == 404 and base.base_image_ocid:
            raise ConfigError(
                f"{image.path}: OCI base image {base.base_image_ocid} not found (or not visible to this user)",
                hint="check the OCID and the region (oci.region or the profile's)",
            ) from None
        raise CloudError(f"looking up the OCI base image failed: {exc.status} {exc.code}: {exc.message}") from None
    except oci.exceptions.RequestException as exc:
        raise CloudError(f"cannot reach OCI to look up the base image ({type(exc).__name__})") from None
    pattern = re.compile(base.display_name_search) if base.display_name_search else None
    matches = [
        i for i in images
        if (not base.operating_system or i.operating_system == base.operating_system)
        and (not base.operating_system_version or i.operating_system_version == base.operating_system_version)
        and (pattern is None or pattern.search(i.display_name or ""))
    ]
    if not matches:
        wanted = " ".join(filter(None, [base.operating_system, base.operating_system_version]))
        named = f" named like {base.display_name_search!r}" if pattern else ""
        raise ConfigError(
            f"{image.path}: no OCI base image found for {wanted or 'the filter'}{named} in compartment {compartment}",
            hint="import AlmaLinux's OCI image as a custom image there, or set oci.base_image_ocid in the definition",
        )
    return f"{matches[0].display_name} ({matches[0].id})"


def _left_behind(settings: Settings, target: Target, log: Path) -> str:
    if target == Target.OCI:
        where = settings.oci.compartment_id or "the tenancy's root compartment"
        return (
            f"Packer was told to clean up, but a build instance named packer-<image>-<timestamp> may still run in "
            f"{where} and may be billed; check the OCI console (Compute > Instances) and terminate it; log: {log}"
        )
    return f"a qemu process may still run and {build_dir(settings)}/output/ may hold a partial qcow2; log: {log}"


def _artifact(settings: Settings, target: Target, out: Path, built: packer.Built, started: datetime) -> dict:
    common = {
        "built_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "image_name": built.custom_data.get("image_name", ""),
        "nomad_version": built.custom_data.get("nomad_version", ""),
        "consul_version": built.custom_data.get("consul_version", ""),
        "docker_ce_version": built.custom_data.get("docker_ce_version", ""),
    }
    if target == Target.OCI:
        if not built.artifact_id.startswith("ocid1.image."):
            raise CommandFailed(f"Packer's manifest names no image OCID (artifact_id {built.artifact_id!r})")
        return {"image_id": built.artifact_id, "region": settings.oci.region, **common}
    qcow2 = [f for f in built.files if f.endswith(".qcow2")]
    if len(qcow2) != 1:
        raise CommandFailed(f"Packer's manifest lists {len(qcow2)} qcow2 files for the qemu build, expected 1")
    path = (out / qcow2[0]).resolve()
    if not path.is_file():
        raise CommandFailed(f"the qcow2 Packer reported, {path}, does not exist")
    return {"path": str(path), "sha256": sha256_file(path), **common}


# ---- verify --------------------------------------------------------------------------------------------------


def verify_argv(settings: Settings, host: str, port: int, user: str | None, key: str | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(PROJECT_ROOT / "tests" / "image"),
        "-p",
        "no:cacheprovider",
        f"--host={host}",
        f"--port={port}",
        f"--user={user or settings.oci.ssh_user}",
        f"--key={Path(key).expanduser() if key else settings.cluster.ssh_private_key}",
        f"--image-def={settings.build.image}",
    ]


def verify(settings: Settings, host: str, port: int, user: str | None, key: str | None) -> None:
    """Run the image verification suite (tests/image) against a booted image over SSH."""
    if not host:
        raise ConfigError("verify-image needs --host", hint="the address of a booted image or node")
    proc.run(verify_argv(settings, host, port, user, key), cwd=PROJECT_ROOT, stream=sys.stderr,
             step="image verification")
