"""The agents' own validators over the rendered nodes: `consul validate` and `nomad config validate`.

Each agent reads its node's config directory as the node will have it: the files the user-data writes under
/etc/consul.d and /etc/nomad.d, laid out in a scratch folder. Both validators merge every path they are
given into one config, so they cannot be batched across nodes: they run one per node and agent, in parallel.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import yaml

from . import imagefacts, proc
from .clustercheck import Check
from .errors import ConfigError


@dataclass(frozen=True)
class Validator:
    agent: str  # "consul" or "nomad"
    setting: str  # where its executable is set
    config_dir: str  # the node's config directory it reads
    argv: Callable[[str, Path], list[str]]  # executable, config dir -> command

    @property
    def label(self) -> str:
        return " ".join(self.argv(self.agent, Path("DIR"))[:-1])


# Both exit 0 with "Configuration is valid!" and non-zero with their reason. Both also print warnings about
# configs they accept (Consul: one line each; Nomad: "WARNING: ..." in colour, even when not on a terminal):
# those are shown on the check's line and do not fail it. The tests pin the exact warnings of every rendered
# case, so a new one is noticed (tests/test_agentcheck.py).
CONSUL = Validator(
    "consul", "build.consul", imagefacts.CONSUL_CONFIG_DIR.path, lambda exe, d: [exe, "validate", str(d)]
)
NOMAD = Validator(
    "nomad", "build.nomad", imagefacts.NOMAD_CONFIG_DIR.path, lambda exe, d: [exe, "config", "validate", str(d)]
)
VALIDATORS = (CONSUL, NOMAD)
VALID_LINE = "Configuration is valid!"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


# A validator lives ~0.1 s, most of it the Go runtime starting: one OS thread for Go code and no garbage
# collection (it allocates under 100 MB and exits) cut its CPU time by a third.
VALIDATOR_ENV = {"GOMAXPROCS": "1", "GOGC": "off"}


def jobs() -> int:
    """How many validators run at once: each is one short-lived Go process, mostly CPU at start-up."""
    return max(2, min(8, (os.cpu_count() or 2) * 2))


def locate(executable: str) -> str | None:
    """The agent's absolute path (a bare name is looked up on PATH), or None when it is not there."""
    return shutil.which(executable) if executable else None


def config_files(user_data: str, config_dir: str) -> dict[str, str]:
    """File name -> content of every file the user-data writes directly into `config_dir`."""
    try:
        entries = (yaml.safe_load(user_data) or {}).get("write_files", [])
    except (yaml.YAMLError, AttributeError):
        return {}
    files = {}
    for entry in entries or []:
        path = PurePosixPath(str(entry.get("path", "")))
        if str(path.parent) == config_dir:
            files[path.name] = str(entry.get("content", ""))
    return files


def said(result: proc.Result, scratch: Path, node_dir: Path) -> list[str]:
    """What the agent printed besides "valid", line by line, uncoloured, scratch paths shown as the node's."""
    text = ANSI_RE.sub("", result.stdout + "\n" + result.stderr).replace(str(scratch), str(node_dir))
    return [line.strip() for line in text.splitlines() if line.strip() and line.strip() != VALID_LINE]


def _lay_out(validator: Validator, node_dir: Path, scratch: Path) -> tuple[Path, list[str]] | str:
    """The node's config directory for `validator` in `scratch`, and its files; or why there is none."""
    files = config_files((node_dir / "user-data").read_text(encoding="utf-8"), validator.config_dir)
    if not files:
        return f"user-data writes no file into {validator.config_dir}"
    folder = scratch / node_dir.name / validator.agent
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        (folder / file_name).write_text(content, encoding="utf-8")
    return folder, sorted(files)


@dataclass(frozen=True)
class _Run:
    """One validator run to make: which agent, over which node's laid-out config directory."""

    validator: Validator
    exe: str
    name: str
    node_dir: Path
    folder: Path
    files: list[str]


def _verdict(run: _Run, result: proc.Result) -> Check:
    lines = said(result, run.folder, run.node_dir)
    if result.exit_code == 0:
        return Check(run.name, True, "warns: " + " | ".join(lines) if lines else "")
    where = ", ".join(f"{run.validator.config_dir}/{f}" for f in run.files)
    return Check(run.name, False, f"{where} rejected (exit {result.exit_code}): {' | '.join(lines) or 'no output'}")


def validate_nodes(nodes_dir: Path, executables: dict[str, str]) -> list[Check]:
    """Both agents' validators over every node under `nodes_dir`; an agent that is not found is one skip line.

    `executables` maps "consul"/"nomad" to the configured executable (build.consul, build.nomad).
    """
    if not nodes_dir.is_dir():
        raise ConfigError(f"{nodes_dir} does not exist", hint="run `invoke render` first")
    node_dirs = sorted(p for p in nodes_dir.iterdir() if p.is_dir())
    checks: list[Check] = []
    work: list[tuple[Validator, str]] = []
    for validator in VALIDATORS:
        configured = executables.get(validator.agent, "")
        found = locate(configured)
        if found:
            work.append((validator, found))
        else:
            checks.append(Check(
                f"{validator.label}", True,
                f"{configured or validator.agent} not found (put it on PATH or set {validator.setting})",
                skipped=True,
            ))
    if not work:
        return checks
    with tempfile.TemporaryDirectory(prefix="nomadic-agentcheck-") as tmp:
        # In node order, each either a finished Check or a run to make.
        planned: list[Check | _Run] = []
        for node_dir in node_dirs:
            for validator, exe in work:
                name = f"{node_dir.name}/{validator.agent}.hcl: {validator.label}"
                laid_out = _lay_out(validator, node_dir, Path(tmp))
                if isinstance(laid_out, str):
                    planned.append(Check(name, False, laid_out))
                else:
                    planned.append(_Run(validator, exe, name, node_dir, *laid_out))
        runs = [item for item in planned if isinstance(item, _Run)]
        results = dict(zip(
            (id(run) for run in runs),
            proc.run_parallel(
                [run.validator.argv(run.exe, run.folder) for run in runs],
                jobs=jobs(), timeout=120, env={**os.environ, **VALIDATOR_ENV},
            ),
        ))
        for item in planned:
            checks.append(item if isinstance(item, Check) else _verdict(item, results[id(item)]))
    return checks
