"""Shared fixtures: settings built the way tasks.py builds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    """Target of the image verification suite (tests/image); without --host it is skipped."""
    group = parser.getgroup("image", "image verification over SSH (tests/image)")
    group.addoption("--host", default=None, help="address of a booted image or node to verify")
    group.addoption("--port", default=22, type=int, help="its SSH port (default 22)")
    group.addoption("--user", default="opc", help="SSH user with passwordless sudo (default opc)")
    group.addoption("--key", default=None, help="SSH private key (default: ssh's own)")
    group.addoption("--image-def", default="almalinux9", help="image definition the host was built from")


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    """Default settings rooted in a scratch folder, so build/ and secrets/ never touch the checkout."""
    return config.load({}, tmp_path)
