"""Guarded reads of the files a user points us at: regular files only, bounded in size, UTF-8, strict YAML.

Every setting, definition and key file goes through here, so a FIFO cannot hang a task, /dev/zero cannot fill
memory, and a bad file is one ConfigError naming it, never a traceback. Messages never quote file contents:
some of these files hold key material.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

SETTINGS_LIMIT = 1 << 20  # invoke.yaml, image definitions, the OCI config file
KEY_LIMIT = 64 << 10  # SSH public keys and API keys are a few KiB at most


def _problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    if exc.errno == errno.ENOTDIR:
        return "does not exist (a parent is not a folder)"
    return f"cannot be read ({exc.strerror or type(exc).__name__})"


def read_bytes(path: Path, what: str, hint: str, limit: int = SETTINGS_LIMIT) -> bytes:
    """The whole file at `path`, which must be a regular file of at most `limit` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it right after.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{what} {path} {_problem(exc)}", hint=hint) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file", hint=hint)
        if st.st_size > limit:
            raise ConfigError(f"{what} {path} is {st.st_size} bytes, more than the {limit} allowed", hint=hint)
        try:
            data = os.read(fd, limit + 1)
        except OSError as exc:
            raise ConfigError(f"{what} {path} {_problem(exc)}", hint=hint) from None
        if len(data) > limit:
            raise ConfigError(f"{what} {path} is more than the {limit} bytes allowed", hint=hint)
        return data
    finally:
        os.close(fd)


def read_text(path: Path, what: str, hint: str, limit: int = SETTINGS_LIMIT) -> str:
    data = read_bytes(path, what, hint, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})", hint=hint) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list); SafeLoader reports it below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, where: Path, hint: str) -> Any:
    """YAML text to data; a syntax error or a duplicate key names the file and line, not the content."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{where}{at}: {problem}", hint=hint) from None


def load_yaml(path: Path, what: str, hint: str) -> Any:
    return parse_yaml(read_text(path, what, hint), path, hint)
