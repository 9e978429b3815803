"""Atomic text writes: the new content with the asked mode, and no temporary file left beside it."""

from __future__ import annotations

import stat
from pathlib import Path

from nomadic.fsutil import write_text_atomic


def test_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ssh_config"
    target.write_text("old\n")
    assert write_text_atomic(target, "new\n", mode=0o600) == target
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ssh_config"]


def test_new_file_gets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "vm.json"
    write_text_atomic(target, "{}\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
