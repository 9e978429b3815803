"""tests/agents.py's recipe: licences read from LICENSE files, go version -m parsing, the cache's integrity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests import agents

MPL = "Copyright (c) 2013 HashiCorp, Inc.\n\nMozilla Public License, version 2.0\n\n1. Definitions\n"
MPL_MD = "Mozilla Public License Version 2.0\n==================================\n"
BUSL = "License text copyright (c) 2020 MariaDB Corporation Ab\n\nBusiness Source License 1.1\n\nParameters\n"
APACHE = "\n                                 Apache License\n                           Version 2.0, January 2004\n"
MIT = "MIT License\n\nCopyright (c) 2016 Someone\n\nPermission is hereby granted, free of charge, to any person\n"

# The shape of `go version -m` (tab-separated), with a replaced module and a local replacement.
VERSION_M = """/x/consul: go1.26.8
\tpath\tgithub.com/hashicorp/consul
\tmod\tgithub.com/hashicorp/consul\t(devel)\t
\tdep\tgithub.com/armon/go-metrics\tv0.4.1
\t=>\tgithub.com/armon/go-metrics\tv0.0.0-20230509193637-d9ca9af9f1f9\th1:abc=
\tdep\tgithub.com/hashicorp/consul/api\tv1.25.1
\t=>\t./api\t(devel)\t
\tdep\tgithub.com/BurntSushi/toml\tv1.2.1\th1:def=
\tbuild\tCGO_ENABLED=0
"""


def go_or_skip() -> str:
    try:
        return agents.find_go()
    except agents.AgentsUnavailable as exc:
        if agents.in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    ("text", "licence"),
    [(MPL, "MPL-2.0"), (MPL_MD, "MPL-2.0"), (BUSL, "BUSL-1.1"), (APACHE, "Apache-2.0"), (MIT, "MIT"),
     ("All rights reserved.\n", "other")],
)
def test_classify_licence_by_the_files_own_words(text: str, licence: str):
    assert agents.classify_licence(text) == licence


def test_module_licence_reads_the_license_files(tmp_path: Path):
    (tmp_path / "LICENSE").write_text(MPL)
    assert agents.module_licence(tmp_path) == "MPL-2.0"
    (tmp_path / "LICENSE").unlink()
    (tmp_path / "README.md").write_text("licensed under the MPL")
    assert agents.module_licence(tmp_path) == "none found"
    assert agents.module_licence(tmp_path / "missing") == "none found"


def test_licence_problem_busl_anywhere_and_hashicorp_modules_mpl_only():
    assert agents.licence_problem("github.com/BurntSushi/toml", "MIT") == ""
    assert agents.licence_problem("github.com/hashicorp/go-hclog", "MIT") == ""
    assert agents.licence_problem("github.com/hashicorp/consul/api", "MPL-2.0") == ""
    assert "Business Source License" in agents.licence_problem("github.com/hashicorp/vault/api", "BUSL-1.1")
    assert "must be MPL-2.0" in agents.licence_problem("github.com/hashicorp/nomad/api", "none found")
    assert "Business Source License" in agents.licence_problem("github.com/hashicorp/consul", "BUSL-1.1")


def test_require_mpl_stops_with_one_line_naming_the_module(tmp_path: Path):
    (tmp_path / "LICENSE").write_text(BUSL)
    with pytest.raises(agents.AgentsUnavailable) as info:
        agents.require_mpl("github.com/hashicorp/consul", "v1.17.0", tmp_path)
    assert str(info.value).startswith("github.com/hashicorp/consul@v1.17.0 is not MPL-2.0 (its LICENSE says BUSL-1.1)")
    assert "\n" not in str(info.value)


def test_linked_modules_resolve_replacements_and_skip_local_ones():
    assert list(agents.linked_modules(VERSION_M)) == [
        ("github.com/armon/go-metrics", "v0.0.0-20230509193637-d9ca9af9f1f9"),
        ("github.com/BurntSushi/toml", "v1.2.1"),
    ]


def test_linked_licences_are_read_from_the_module_cache(tmp_path: Path):
    (tmp_path / "github.com/armon/go-metrics@v0.0.0-20230509193637-d9ca9af9f1f9").mkdir(parents=True)
    (tmp_path / "github.com/armon/go-metrics@v0.0.0-20230509193637-d9ca9af9f1f9/LICENSE").write_text(MIT)
    toml = tmp_path / "github.com/!burnt!sushi/toml@v1.2.1"  # the module cache's case encoding
    toml.mkdir(parents=True)
    (toml / "COPYING").write_text(MIT)
    assert agents.check_linked_licences(VERSION_M, tmp_path) == [
        "github.com/armon/go-metrics v0.0.0-20230509193637-d9ca9af9f1f9 MIT",
        "github.com/BurntSushi/toml v1.2.1 MIT",
    ]
    (toml / "COPYING").write_text(BUSL)
    with pytest.raises(agents.AgentsUnavailable) as info:
        agents.check_linked_licences(VERSION_M, tmp_path)
    assert "github.com/BurntSushi/toml is under the Business Source License" in str(info.value)


def test_recipe_hash_follows_the_recipe():
    base = agents.recipe_hash(agents.CONSUL, "go1.26.8")
    assert base == agents.recipe_hash(agents.CONSUL, "go1.26.8")
    assert base != agents.recipe_hash(agents.CONSUL, "go1.27.0")
    assert base != agents.recipe_hash(dataclasses.replace(agents.CONSUL, version="1.16.2"), "go1.26.8")
    assert base != agents.recipe_hash(dataclasses.replace(agents.NOMAD, tags=("release",)), "go1.26.8")


def test_cache_layout_and_a_tampered_binary_is_not_used(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = agents.agent_dir(agents.NOMAD, "go1.26.8")
    assert folder.parent == tmp_path / "nomadic" / "agents"
    assert folder.name == f"nomad-1.6.3-{agents.recipe_hash(agents.NOMAD, 'go1.26.8')}"
    folder.mkdir(parents=True)
    binary = folder / "nomad"
    binary.write_bytes(b"\x7fELF the binary")
    (folder / "nomad.sha256").write_text(f"{agents.sha256_file(binary)}  nomad\n")
    (folder / "version.txt").write_text("Nomad v1.6.3\n")
    assert agents.cached(agents.NOMAD, "go1.26.8") == binary
    binary.write_bytes(b"\x7fELF changed")
    assert agents.cached(agents.NOMAD, "go1.26.8") is None


def test_no_go_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(agents.shutil, "which", lambda name: None)
    monkeypatch.setattr(agents.os, "access", lambda path, mode: False)
    with pytest.raises(agents.AgentsUnavailable) as info:
        agents.find_go()
    assert "\n" not in str(info.value) and str(info.value).startswith("Go not found: install Go")


def test_local_replaces_read_by_go_itself(tmp_path: Path):
    go = go_or_skip()
    (tmp_path / "go.mod").write_text(
        "module github.com/hashicorp/consul\n\ngo 1.20\n\n"
        "replace (\n\tgithub.com/hashicorp/consul/api => ./api\n\tgithub.com/hashicorp/consul/sdk => ./sdk/\n)\n\n"
        "replace github.com/armon/go-metrics => github.com/armon/go-metrics v0.0.0-20230509193637-d9ca9af9f1f9\n"
    )
    assert agents.local_replaces(go, agents.go_env(go), tmp_path) == {"api", "sdk"}


def test_the_built_agents_are_the_releases_and_link_no_busl_module():
    """The cached builds themselves: versions as released, and licences.txt as read from the module cache."""
    paths = agents.require()
    for release in agents.RELEASES:
        folder = paths[release.name].parent
        assert (folder / "version.txt").read_text().splitlines()[0] == {
            "consul": "Consul v1.16.3", "nomad": "Nomad v1.6.3"}[release.name]
        rows = [line.split(" ") for line in (folder / "licences.txt").read_text().splitlines()]
        assert rows and not [r for r in rows if "BUSL" in r[2]]
        own = [r for r in rows if r[0].startswith(f"github.com/hashicorp/{release.name}")]
        assert all(r[2] == "MPL-2.0" for r in own), own
