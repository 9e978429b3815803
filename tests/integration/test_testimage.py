"""The VM test image's recipe, checked without building it: what it tells cloud-init and systemd."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nomadic import imagefacts, packer, proc

from . import testimage

IN_CI = os.environ.get("CI") == "true"


def test_cloud_init_unit_has_rhel_ordering_not_debians_cycle() -> None:
    unit = testimage.files()["etc/systemd/system/cloud-init.service"][0]
    lines = unit.splitlines()
    assert "Before=sysinit.target" not in lines  # with firewalld this closes the cycle systemd breaks silently
    assert "DefaultDependencies=no" not in lines
    assert "After=systemd-networkd-wait-online.service" in lines
    assert "Before=network-online.target" in lines


def test_agent_parts_come_from_the_bakes_own_scripts_and_files() -> None:
    """No second recipe: the units, firewalld services, tmpfiles.d and sysctl files are the bake's rendered ones,
    put in place by the bake's scripts (the recipe itself writes only Debian's own files)."""
    rendered = testimage.nomadic_files()
    assert f"ExecStart={imagefacts.CONSUL_BIN} agent" in rendered["systemd/consul.service"]
    assert f"ExecStart={imagefacts.NOMAD_BIN} agent" in rendered["systemd/nomad.service"]
    assert {f"firewalld/{s}.xml" for s in imagefacts.FIREWALLD_SERVICES} <= set(rendered)
    for script in testimage.PROVISIONING:
        assert (packer.SCRIPTS_DIR / script).is_file(), script
    assert {"45-prepare-dirs.sh", "50-install-units.sh", "60-install-firewalld.sh", "90-clean-identity.sh"} <= set(
        testimage.PROVISIONING)
    own = testimage.files()
    assert not any(path.startswith(("etc/systemd/system/consul", "etc/systemd/system/nomad", "etc/firewalld"))
                   for path in own)


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


def test_recipe_hash_follows_the_agents(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"consul 1")
    b.write_bytes(b"consul 2")
    assert testimage.recipe_hash({"consul": a}) != testimage.recipe_hash({"consul": b})
