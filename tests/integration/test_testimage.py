"""The VM test image's recipe, checked without building it: what it tells cloud-init and systemd."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nomadic import imagefacts, proc

from . import testimage

IN_CI = os.environ.get("CI") == "true"


def test_cloud_init_unit_has_rhel_ordering_not_debians_cycle() -> None:
    unit = testimage.files()["etc/systemd/system/cloud-init.service"][0]
    lines = unit.splitlines()
    assert "Before=sysinit.target" not in lines  # with firewalld this closes the cycle systemd breaks silently
    assert "DefaultDependencies=no" not in lines
    assert "After=systemd-networkd-wait-online.service" in lines
    assert "Before=network-online.target" in lines


def test_standins_keep_the_real_units_ordering_and_conditions() -> None:
    files = testimage.files()
    consul = files[imagefacts.CONSUL_UNIT.lstrip("/")][0]
    nomad = files[imagefacts.NOMAD_UNIT.lstrip("/")][0]
    assert f"ConditionFileNotEmpty={imagefacts.CONSUL_CONFIG_FILE}" in consul
    assert f"User={imagefacts.CONSUL_USER}" in consul
    assert "After=network-online.target consul.service" in nomad
    for unit in (consul, nomad):
        assert "STAND-IN" in unit and testimage.STANDIN_LOG in unit
        assert imagefacts.CONSUL_BIN not in unit and imagefacts.NOMAD_BIN not in unit


def test_system_cloud_config_is_valid(tmp_path: Path) -> None:
    """cloud-init validates user-data merged with this file: an invalid key here would read as our error."""
    if not shutil.which("cloud-init"):
        if IN_CI:
            pytest.fail("cloud-init is missing in CI (bin/setup installs it)")
        pytest.skip("cloud-init not installed")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("#cloud-config\n" + testimage.CLOUD_CFG)
    assert proc.run(["cloud-init", "schema", "-c", str(cfg)], check=False).exit_code == 0


def test_recipe_hash_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    before = testimage.recipe_hash()
    assert before == testimage.recipe_hash()
    monkeypatch.setattr(testimage, "PACKAGES", testimage.PACKAGES + ("vim-tiny",))
    assert testimage.recipe_hash() != before
