"""Validators over what write_nodes wrote, per node: both cloud-init schemas, the firewalld zone, HCL; then the
cluster as a whole (clustercheck). Each tool runs once for all nodes, not once a node."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import proc
from .clustercheck import Check, NodeConfig, check_cluster, parse_hcl
from .errors import ConfigError, ToolMissing
from .render import PROJECT_ROOT

SCHEMA_24_4 = PROJECT_ROOT / "cloud-init" / "schemas" / "cloud-init-24.4-schema-cloud-config-v1.json"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@lru_cache(maxsize=1)
def _validator_24_4() -> Any:
    try:
        import jsonschema
    except ImportError:
        raise ToolMissing(
            "jsonschema is not installed, so user-data cannot be checked against cloud-init's schema",
            hint="install the dev extra: .venv/bin/pip install -e '.[dev]'",
        ) from None
    return jsonschema.Draft4Validator(json.loads(SCHEMA_24_4.read_text(encoding="utf-8")))


def schema_errors_24_4(user_data: str) -> list[str]:
    """Errors of `user_data` against cloud-init 24.4's cloud-config schema (AlmaLinux 9's; strict on keys)."""
    if not user_data.startswith("#cloud-config\n"):
        return ["does not start with a '#cloud-config' line"]
    try:
        data = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        return [f"not YAML: {str(exc).splitlines()[0]}"]
    errors = []
    for error in sorted(_validator_24_4().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        errors.append(f"{where}: {error.message}")
    return errors


# Each validator below runs once for all nodes: one Python process that calls the installed tool's own code
# for every file, instead of one process a node (start-up is most of a validator's time).

_SCHEMA_BATCH = (
    "import json, sys\n"
    "from cloudinit import version\n"
    "from cloudinit.config.schema import SchemaValidationError, get_schema, validate_cloudconfig_file\n"
    "print(json.dumps({'version': version.version_string()}))\n"
    "schema = get_schema()\n"
    "for path in sys.argv[1:]:\n"
    "    try:\n"
    "        validate_cloudconfig_file(path, schema)  # what `cloud-init schema --config-file` calls\n"
    "        print(json.dumps({'path': path, 'error': ''}))\n"
    "    except (SchemaValidationError, RuntimeError) as exc:\n"
    "        print(json.dumps({'path': path, 'error': str(exc) or exc.__class__.__name__}))\n"
)


def _cloud_init_python() -> str | None:
    """The interpreter the installed cloud-init runs with (its script's #! line), or None without cloud-init."""
    script = shutil.which("cloud-init")
    if script is None:
        return None
    with open(script, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    return first[2:].strip().split()[0] if first.startswith("#!") else SYSTEM_PYTHON


def _missing(name: str, detail: str) -> Check:
    return Check(name, False, detail) if _in_ci() else Check(name, True, detail, skipped=True)


def cloud_init_schema_checks(files: Sequence[tuple[Path, str]]) -> tuple[str, list[Check]]:
    """The installed cloud-init (22.4 on Debian 12) validating each (path, check name); and its version."""
    python = _cloud_init_python()
    if python is None:
        return "", [_missing(name, "cloud-init not installed (apt-get install cloud-init)") for _, name in files]
    result = proc.run([python, "-c", _SCHEMA_BATCH, *(str(p) for p, _ in files)], check=False, timeout=300)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.exit_code != 0 or len(lines) != len(files) + 1:
        said = (result.stderr.strip().splitlines() or [f"exit code {result.exit_code}"])[-1]
        return "", [Check(name, False, f"cloud-init's schema check did not run: {said}") for _, name in files]
    errors = {line["path"]: line["error"] for line in lines[1:]}
    checks = []
    for path, name in files:
        error = errors[str(path)]
        checks.append(Check(name, not error, error.splitlines()[0] if error else ""))
    return lines[0]["version"], checks


def cloud_init_schema_check(path: Path, name: str) -> Check:
    """One file through the installed cloud-init's schema validator."""
    return cloud_init_schema_checks([(path, name)])[1][0]


def cloud_init_version() -> str:
    """'22.4.2' or so; '' when cloud-init is absent."""
    if shutil.which("cloud-init") is None:
        return ""
    result = proc.run(["cloud-init", "--version"], check=False, timeout=60)
    words = (result.stdout + " " + result.stderr).split()
    return words[-1] if words else ""


# firewalld's own zone parser (Debian: python3-firewall), run by the system Python it is installed for:
# argv is a folder, then one zone file name per node; it prints one JSON line per zone.
SYSTEM_PYTHON = "/usr/bin/python3"
_ZONE_READER = (
    "import json, sys\n"
    "from firewall.core.io.zone import zone_reader\n"
    "for name in sys.argv[2:]:\n"
    "    try:\n"
    "        zone = zone_reader(name, sys.argv[1])\n"
    "        print(json.dumps({'name': name, 'error': ''}))\n"
    "    except Exception as exc:\n"
    "        print(json.dumps({'name': name, 'error': str(exc) or exc.__class__.__name__}))\n"
)


def firewalld_zone_checks(user_datas: Sequence[tuple[str, str]]) -> list[Check]:
    """The firewalld zone each (user-data, check name) writes, parsed and checked by firewalld's own reader."""
    from .nodeconfig import ZONE_FILE

    checks: dict[int, Check] = {}
    zones: dict[int, str] = {}
    for i, (user_data, name) in enumerate(user_datas):
        try:
            files = {f.get("path"): f for f in (yaml.safe_load(user_data) or {}).get("write_files", [])}
        except (yaml.YAMLError, AttributeError):
            checks[i] = Check(name, False, "user-data is not a cloud-config mapping")
            continue
        if ZONE_FILE not in files:
            checks[i] = Check(name, False, f"user-data writes no {ZONE_FILE}")
            continue
        zones[i] = str(files[ZONE_FILE].get("content", ""))
    if zones and not Path(SYSTEM_PYTHON).exists():
        for i in zones:
            checks[i] = _missing(user_datas[i][1], f"{SYSTEM_PYTHON} not found (apt-get install python3-firewall)")
    elif zones:
        zone_name = Path(ZONE_FILE).name
        with tempfile.TemporaryDirectory() as tmp:
            # zone_reader takes the zone's name from its file name: one numbered file per node.
            names = {i: f"{i}-{zone_name}" for i in zones}
            for i, file_name in names.items():
                (Path(tmp) / file_name).write_text(zones[i], encoding="utf-8")
            result = proc.run([SYSTEM_PYTHON, "-c", _ZONE_READER, tmp, *names.values()], check=False, timeout=120)
        said = {}
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                said[entry["name"]] = entry["error"]
        stderr = result.stderr.strip().splitlines()
        for i, file_name in names.items():
            name = user_datas[i][1]
            if file_name in said:
                checks[i] = Check(name, not said[file_name], said[file_name])
            elif any("No module named 'firewall'" in line for line in stderr):
                detail = "firewalld's python module is not installed (apt-get install python3-firewall)"
                checks[i] = _missing(name, detail)
            else:
                checks[i] = Check(name, False, stderr[-1] if stderr else f"exit code {result.exit_code}")
    return [checks[i] for i in range(len(user_datas))]


def firewalld_zone_check(user_data: str, name: str) -> Check:
    return firewalld_zone_checks([(user_data, name)])[0]


def validate_written(nodes_dir: Path) -> list[Check]:
    """Per node: user-data against both cloud-init schemas, its firewalld zone, both HCL files; then the cluster."""
    if not nodes_dir.is_dir():
        raise ConfigError(f"{nodes_dir} does not exist", hint="run `invoke render` first")
    node_dirs = sorted(p for p in nodes_dir.iterdir() if p.is_dir())
    texts = {d.name: (d / "user-data").read_text(encoding="utf-8") for d in node_dirs}
    installed, schema_checks = cloud_init_schema_checks(
        [(d / "user-data", f"{d.name}/user-data: cloud-init {{installed}} schema") for d in node_dirs]
    )
    zone_checks = firewalld_zone_checks([(texts[d.name], f"{d.name}/user-data: firewalld zone") for d in node_dirs])
    checks: list[Check] = []
    parsed: dict[str, dict[str, Any]] = {}  # each HCL file parsed once: python-hcl2 is most of this step's time
    for node_dir, schema_check, zone_check in zip(node_dirs, schema_checks, zone_checks):
        node = node_dir.name
        errors = schema_errors_24_4(texts[node])
        checks.append(Check(f"{node}/user-data: cloud-init 24.4 schema", not errors, "; ".join(errors)))
        checks.append(replace(schema_check, name=schema_check.name.format(installed=installed or "installed")))
        checks.append(zone_check)
        for kind in ("consul", "nomad"):
            path = node_dir / f"{kind}.hcl"
            try:
                parsed.setdefault(node, {})[kind] = parse_hcl(path.read_text(encoding="utf-8"), str(path))
                checks.append(Check(f"{node}/{kind}.hcl: HCL parses", True))
            except ConfigError as exc:
                checks.append(Check(f"{node}/{kind}.hcl: HCL parses", False, exc.message))
    if all(c.ok for c in checks):
        checks.extend(check_cluster({n: NodeConfig(n, p["consul"], p["nomad"]) for n, p in parsed.items()}))
    return checks


