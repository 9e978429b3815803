"""Settings load from Invoke's config, flags win, bad values give one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config
from nomadic.errors import ConfigError


def test_defaults_cover_every_setting_and_are_none_for_invoke():
    d = config.defaults()
    assert set(d) == {"oci", "build", "cluster", "local", "jobs"}
    assert all(v is None for section in d.values() for v in section.values())
    assert "endpoint" in d["oci"]


def test_overrides_win_over_file_values(tmp_path: Path):
    s = config.load({"cluster": {"count": 2, "name": "a"}}, tmp_path, {"cluster.count": "5", "cluster.name": None})
    assert s.cluster.count == 5
    assert s.cluster.name == "a"


def test_enums_and_lists_parse(tmp_path: Path):
    s = config.load(
        {"build": {"target": "QEMU"}, "oci": {"availability_domains": "AD-1, AD-2", "allow_paid": "yes"}}, tmp_path
    )
    assert s.build.target is config.Target.QEMU
    assert s.oci.availability_domains == ("AD-1", "AD-2")
    assert s.oci.allow_paid is True


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"cluster": {"count": "two"}}, "cluster.count"),
        ({"build": {"target": "aws"}}, "build.target"),
        ({"cluster": {"name": "Bad_Name"}}, "cluster.name"),
        ({"cluster": {"cidr": "10.0.0.1/24"}}, "cluster.cidr"),
        ({"oci": {"subnet_id": "subnet-123"}}, "oci.subnet_id"),
        ({"oci": {"no_such_key": 1}}, "oci.no_such_key"),
        ({"local": {"memory_mb": 0}}, "local.memory_mb"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, raw, fragment):
    with pytest.raises(ConfigError) as info:
        config.load(raw, tmp_path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_jobs_settings_are_checked_with_the_setting_named(tmp_path: Path):
    s = config.load({"jobs": {"domain": "oracle.example.com", "public_addresses": "192.0.2.1, 192.0.2.2"}}, tmp_path)
    assert s.jobs.public_addresses == ("192.0.2.1", "192.0.2.2")
    for raw, named in (
        ({"domain": "Not A Domain"}, "jobs.domain"),
        ({"public_addresses": "192.0.2.1,host.example"}, "jobs.public_addresses"),
        ({"dns_port": "70000"}, "jobs.dns_port"),
        ({"web_count": "0"}, "jobs.web_count"),
        ({"public_cidr": "0.0.0.1/0"}, "jobs.public_cidr"),
    ):
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            config.load({"jobs": raw}, tmp_path)
