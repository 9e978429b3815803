"""Every user mistake is one clear line and creates nothing (real SDK against the emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadic import config, lifecycle
from nomadic.errors import ConfigError, NomadicError, PlanError
from nomadic.providers.oci import OciProvider
from tests.ociemu import Emulator, Fault
from tests.ociemu.server import ARM_IMAGE, SUBNET
from tests.ociemu.testing import Capture, settings_for


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


def launch(settings, image=None):
    lifecycle.launch(
        settings, image, False, provider=OciProvider(settings, sleep=lambda s: None),
        console=lifecycle.Console(Capture().buffer),
    )


def fails(emu: Emulator, settings, pattern: str, image=None, kind=NomadicError) -> str:
    with pytest.raises(kind, match=pattern) as info:
        launch(settings, image)
    text = str(info.value)
    assert "\n" not in text
    assert emu.launch_calls() == 0 and emu.live() == []
    return text


def test_config_file_missing_names_file_and_profile(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, oci={"config_file": str(tmp_path / "nope"), "profile": "WORK"})
    text = fails(emu, settings, "setting oci.config_file = .*nope does not exist", kind=ConfigError)
    assert "oci setup config" in text


def test_profile_missing_names_file_and_profile(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, oci={"profile": "WORK"})
    fails(emu, settings, r"setting oci.profile = 'WORK': no such profile in .*config \(profiles there: DEFAULT\)")


def test_unreadable_key_file(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    (tmp_path / "oci" / "oci_api_key.pem").write_text("not a key")
    fails(emu, settings, "key_file .*oci_api_key.pem of profile 'DEFAULT' is not a PEM private key", kind=ConfigError)


def test_a_pem_that_is_no_key_cannot_be_loaded(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    (tmp_path / "oci" / "oci_api_key.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n")
    fails(emu, settings, "API signing key .* cannot be loaded", kind=ConfigError)


@pytest.mark.parametrize("key", ["compartment_id", "subnet_id"])
def test_malformed_ocids_in_settings(emu: Emulator, tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"setting oci.{key} = 'ocid1.nope' is not an OCID"):
        settings_for(emu, tmp_path, oci={key: "ocid1.nope"})


def test_malformed_image_ocid(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    fails(emu, settings, "image 'ami-123' is not an image OCID", image="ami-123", kind=ConfigError)
    fails(emu, settings, "is not an image OCID", image="ocid1.subnet.oc1.iad.abc", kind=ConfigError)


def test_missing_compartment_setting(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, oci={"compartment_id": ""})
    fails(emu, settings, "setting oci.compartment_id is empty", kind=ConfigError)


def test_subnet_not_found(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, oci={"subnet_id": SUBNET + "x"})
    fails(emu, settings, "subnet .*x: not found or not authorized")


def test_subnet_not_authorized(emu: Emulator, tmp_path: Path) -> None:
    emu.inject(Fault("GET", "get_subnet", 401, "NotAuthenticated", "no"))
    settings = settings_for(emu, tmp_path)
    fails(emu, settings, r"subnet .*: OCI refused the credentials \(401 NotAuthenticated\)")


def test_subnet_cidr_must_match(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, cluster={"cidr": "10.1.0.0/24"})
    fails(emu, settings, "cluster.cidr = 10.1.0.0/24 differs from subnet .* 10.0.0.0/24", kind=ConfigError)


def test_image_not_found(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    fails(emu, settings, "image ocid1.image.oc1.iad.missing: not found or not authorized", image="ocid1.image.oc1.iad.missing")


def test_image_incompatible_with_shape(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    fails(
        emu, settings, "image .* is not compatible with shape VM.Standard.E2.1.Micro \\(compatible: VM.Standard.A1.Flex\\)",
        image=ARM_IMAGE, kind=ConfigError,
    )


def test_count_below_one_touches_no_api(emu: Emulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting cluster.count = 0 is invalid: expected a number from 1"):
        settings_for(emu, tmp_path, cluster={"count": 0})
    assert sum(emu.calls.values()) == 0


def test_no_image_recorded_and_none_given(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, record_image=False)
    fails(emu, settings, "no OCI image recorded .* and none given", kind=ConfigError)


def test_unknown_availability_domain(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, oci={"availability_domains": "Uocm:US-ASHBURN-AD-9"})
    fails(emu, settings, "unknown ADs: Uocm:US-ASHBURN-AD-9", kind=ConfigError)


def test_missing_ssh_public_key(emu: Emulator, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    settings = config.with_overrides(settings, cluster={"ssh_public_key": tmp_path / "none.pub"})
    fails(emu, settings, "cluster.ssh_public_key = .*none.pub does not exist", kind=ConfigError)


def test_a_private_key_is_never_sent_as_ssh_authorized_keys(emu: Emulator, tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAsecret\n", encoding="utf-8")
    settings = config.with_overrides(settings_for(emu, tmp_path), cluster={"ssh_public_key": private})
    text = fails(emu, settings, "is not an OpenSSH public key", kind=ConfigError)
    assert "secret" not in text


def test_unreachable_endpoint(tmp_path: Path) -> None:
    with Emulator() as emu:
        settings = settings_for(emu, tmp_path)
    # the emulator is stopped now: nothing listens on that loopback port
    with pytest.raises(NomadicError, match="cannot reach the OCI API at http://127.0.0.1"):
        launch(settings)


def test_a_mangled_config_file_never_echoes_its_lines(tmp_path: Path) -> None:
    """configparser quotes the offending line; the OCI config holds key material, so the error must not."""
    from nomadic import config as cfg, ociclient

    secret_line = "pass_phrase = hunter2-do-not-print"
    bad = tmp_path / "config"
    bad.write_text(f"{secret_line}\n[DEFAULT]\nuser=ocid1.user.oc1..aaaa\n", encoding="utf-8")
    settings = cfg.load({"oci": {"config_file": str(bad)}}, tmp_path)
    with pytest.raises(ConfigError) as info:
        ociclient.session(settings)
    assert "hunter2" not in str(info.value) and str(bad) in str(info.value)


def test_build_image_config_check_never_echoes_its_lines(tmp_path: Path) -> None:
    from nomadic import config as cfg, imagebuild, imagedef

    bad = tmp_path / "config"
    bad.write_text("key_content = -----BEGIN RSA PRIVATE KEY-----MIIEsecret\n[DEFAULT]\n", encoding="utf-8")
    settings = cfg.load({"oci": {"config_file": str(bad)}}, tmp_path)
    problems = imagebuild.oci_problems(settings, imagedef.load("almalinux9"), (1, 6, 6))
    assert problems and "MIIEsecret" not in str(problems[0])
    assert "not a valid INI file" in str(problems[0]) and "line 1" in str(problems[0])


def test_sdk_clients_are_made_only_by_the_seam() -> None:
    """Every OCI SDK call goes through nomadic/providers/oci/api.py (retries, error mapping): no other module
    makes a client or calls the SDK's pagination or waiters itself."""
    root = Path(__file__).resolve().parent.parent / "nomadic"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() in ("providers/oci/api.py", "ociclient.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("ociclient.compute(", "ociclient.network(", "ociclient.identity(", "ociclient.blockstorage(",
                       "ociclient.objectstorage(", "ociclient.workrequests(",
                       "oci.pagination", "oci.wait_until", "oci.core.ComputeClient", "oci.core.VirtualNetworkClient"):
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []
