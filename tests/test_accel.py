"""The accelerator choice: TCG unless KVM is asked for or proven to run a guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import accel
from nomadic.config import Accel, LocalSettings
from nomadic.errors import ProviderError


def test_kvm_opens_is_false_for_a_missing_or_foreign_device(tmp_path: Path) -> None:
    assert accel.kvm_opens(str(tmp_path / "no-kvm")) is False
    assert accel.kvm_opens("/dev/null") is False  # opens, but does not answer the KVM ioctl


def test_tcg_is_taken_as_asked(tmp_path: Path) -> None:
    assert accel.choose(LocalSettings(accel=Accel.TCG), tmp_path) is Accel.TCG


def test_auto_falls_back_to_tcg_when_the_probe_cannot_run(tmp_path: Path) -> None:
    # Whether or not /dev/kvm opens here, a probe whose QEMU does not exist never proves KVM.
    local = LocalSettings(accel=Accel.AUTO, qemu=str(tmp_path / "no-such-qemu"))
    assert accel.choose(local, tmp_path) is Accel.TCG
    assert not list(tmp_path.glob("kvm-probe.*"))


def test_forced_kvm_without_a_device_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "KVM_DEVICE", str(tmp_path / "no-kvm"))
    monkeypatch.setattr(accel.kvm_opens, "__defaults__", (str(tmp_path / "no-kvm"),))
    with pytest.raises(ProviderError, match="local.accel = kvm"):
        accel.choose(LocalSettings(accel=Accel.KVM), tmp_path)
