"""The agents' own validators over the rendered nodes: `consul validate` and `nomad config validate`.

Each agent reads its node's config directory as the node will have it: the files the user-data writes under
/etc/consul.d and /etc/nomad.d, laid out in a scratch folder. Both validators merge every path they are
given into one config, so they cannot be batched across nodes: they run one per node and agent, in parallel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

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


# `consul validate` exits 0 with "Configuration is valid!"; its -quiet drops that line only, never a warning.
# `nomad config validate` exits 0 with "Configuration is valid!" and prints its warnings before that line.
CONSUL = Validator("consul", "build.consul", imagefacts.CONSUL_CONFIG_DIR.path, lambda exe, d: [exe, "validate", str(d)])
NOMAD = Validator(
    "nomad", "build.nomad", imagefacts.NOMAD_CONFIG_DIR.path, lambda exe, d: [exe, "config", "validate", str(d)]
)
VALIDATORS = (CONSUL, NOMAD)
VALID_LINE = "Configuration is valid!"


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


def _detail(result: proc.Result, scratch: Path, node_dir: Path) -> tuple[bool, str]:
    """(passed, what the agent said): one line, its words, with scratch paths shown as the node's files."""
    text = (result.stdout + "\n" + result.stderr).replace(str(scratch), str(node_dir))
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != VALID_LINE]
    return result.exit_code == 0, " | ".join(lines)


def _run_one(validator: Validator, executable: str, node: str, node_dir: Path, scratch: Path) -> Check:
    name = f"{node}/{validator.agent}.hcl: {validator.label}"
    user_data = (node_dir / "user-data").read_text(encoding="utf-8")
    files = config_files(user_data, validator.config_dir)
    if not files:
        return Check(name, False, f"user-data writes no file into {validator.config_dir}")
    folder = scratch / node / validator.agent
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        (folder / file_name).write_text(content, encoding="utf-8")
    result = proc.run(validator.argv(executable, folder), check=False, timeout=120)
    ok, said = _detail(result, folder, node_dir)
    if ok:
        # The validators pass configs they warn about; a warning is a finding, so it fails the check.
        return Check(name, not said, said and f"warns: {said}")
    where = ", ".join(f"{validator.config_dir}/{f}" for f in sorted(files))
    return Check(name, False, f"{where} rejected (exit {result.exit_code}): {said or 'no output'}")


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
        tasks: Sequence[tuple[Any, ...]] = [
            (validator, exe, d.name, d, Path(tmp)) for d in node_dirs for validator, exe in work
        ]
        with ThreadPoolExecutor(max_workers=jobs()) as pool:
            checks.extend(pool.map(lambda t: _run_one(*t), tasks))
    return checks
