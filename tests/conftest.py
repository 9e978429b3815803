"""Shared fixtures: settings built the way tasks.py builds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    """Default settings rooted in a scratch folder, so build/ and secrets/ never touch the checkout."""
    return config.load({}, tmp_path)
