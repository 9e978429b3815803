"""A booted image (fresh clone or node), checked over SSH: binaries and versions, units enabled and not started,
directories, no identity baked in, SELinux enforcing, swap, firewalld services, sysctls.
Skipped unless --host is given (invoke verify-image --host ...)."""

from __future__ import annotations

from nomadic import imagechecks
from nomadic.imagedef import ImageDef
from nomadic.imagechecks import Run

import pytest

pytestmark = pytest.mark.image


def test_binaries_at_the_pinned_versions(host: Run, image: ImageDef) -> None:
    assert imagechecks.binaries(host, image.versions) == []


def test_units_enabled_and_not_started_before_cloud_init(host: Run) -> None:
    assert imagechecks.units(host) == []


def test_directories_owners_and_modes(host: Run) -> None:
    assert imagechecks.directories(host) == []


def test_no_identity_baked_in(host: Run, build_public_key: str | None) -> None:
    assert imagechecks.no_identity(host, build_public_key) == []


def test_selinux_enforcing(host: Run) -> None:
    assert imagechecks.selinux(host) == []


def test_swap_in_use(host: Run, image: ImageDef) -> None:
    assert imagechecks.swap(host, image.swap_mb) == []


def test_firewalld_services(host: Run) -> None:
    assert imagechecks.firewalld_services(host) == []


def test_sysctls(host: Run) -> None:
    assert imagechecks.sysctls(host) == []


def test_pins_locked(host: Run, image: ImageDef) -> None:
    assert imagechecks.pins_locked(host, image.versions) == []


def test_cni_plugins(host: Run) -> None:
    assert imagechecks.cni_plugins(host) == []


def test_what_oci_needs_to_boot_it(host: Run) -> None:
    assert imagechecks.oci_boot(host) == []
