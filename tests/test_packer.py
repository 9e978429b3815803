"""The Packer side: version parsing, argv, rendered template (golden files, HCL parse, real `packer validate`
on both sources with a throwaway OCI config), the NoCloud seed's schema, and manifest parsing.

Regenerate the golden files with: UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_packer.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nomadic import clustercheck, config, imagebuild, imagedef, nodecheck, packer
from nomadic.config import Target
from nomadic.errors import CommandFailed, ConfigError

from packer_support import OCI_ENV, make_oci_config, require_tool

GOLDEN = Path(__file__).resolve().parent / "golden" / "packer"
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenGoldenGoldenGoldenGoldenGoldenGold nomadic-build"


def settings_for(root: Path, oci: dict | None = None, **sections: dict) -> config.Settings:
    raw: dict = {"oci": oci or {}, "local": {"accel": "tcg"}, **sections}
    return config.load(raw, root)


# ---- pure pieces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Packer v1.6.6\n", (1, 6, 6)),
        ("Packer v1.11.2\n\nYour version of Packer is out of date! The latest version\nis 1.12.0.", (1, 11, 2)),
        ("1.9.4", (1, 9, 4)),
    ],
)
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert packer.parse_version(text) == version


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(CommandFailed, match="cannot read Packer's version"):
        packer.parse_version("command not found")


def test_plugins_and_init_only_from_1_7() -> None:
    assert not packer.has_plugins((1, 6, 6))
    assert packer.has_plugins((1, 7, 0)) and packer.has_plugins((1, 11, 2))


def test_argv_builders() -> None:
    assert packer.version_argv("packer") == ["packer", "version"]
    assert packer.init_argv("/opt/packer") == ["/opt/packer", "init", "."]
    assert packer.validate_argv("packer") == ["packer", "validate", "."]
    assert packer.validate_argv("packer", ["qemu.almalinux"]) == ["packer", "validate", "-only=qemu.almalinux", "."]
    assert packer.build_argv("packer", Target.OCI) == [
        "packer", "build", "-color=false", "-on-error=cleanup", "-only=oracle-oci.almalinux", ".",
    ]
    assert packer.build_argv("packer", Target.QEMU)[-2] == "-only=qemu.almalinux"


def test_validate_errors_keeps_the_messages_only() -> None:
    out = (
        "Error: 2 error(s) occurred:\n\n* 'key_file' must be specified\n* 'subnet_ocid' must be specified\n\n"
        "  on image.pkr.hcl line 1:\n  (source code not available)\n\n"
        "Error: Invalid value for default variable\n\nThe shape must not be empty.\n\n"
        "This was checked by the validation rule at image.pkr.hcl:5,3-13.\n"
    )
    assert packer.validate_errors(out) == [
        "'key_file' must be specified",
        "'subnet_ocid' must be specified",
        "Invalid value for default variable",
        "The shape must not be empty.",
    ]


def test_scripts_are_ordered_and_well_named(tmp_path: Path) -> None:
    names = packer.scripts()
    assert names == sorted(names) and names[0].startswith("10-") and names[-1] == "99-check-image.sh"
    (tmp_path / "5-bad.sh").write_text("")
    with pytest.raises(ConfigError, match="NN-verb-noun.sh"):
        packer.scripts(tmp_path)


def test_cpu_model_gives_tcg_an_x86_64_v2_cpu() -> None:
    assert packer.cpu_model("tcg") == "max"
    assert packer.cpu_model("kvm") == "host"


# ---- rendering -----------------------------------------------------------------------------------------------


def rendered(settings: config.Settings, version=(1, 6, 6), accel: str = "tcg", image: str = "almalinux9") -> dict:
    ctx = packer.build_context(settings, imagedef.load(image), version, accel, TEST_KEY)
    return packer.render_files(ctx)


GOLDEN_CASES = {
    # Debian's Packer 1.6.6 (CI), Always Free shape, API key profile, base image by filter.
    "packer-1.6.6-micro": dict(version=(1, 6, 6), oci={}),
    # Packer >= 1.7: plugins file; a Flex shape gets shape_config; instance principals; explicit region.
    "packer-1.11-flex-instance-principal": dict(
        version=(1, 11, 2),
        oci={"shape": "VM.Standard.E4.Flex", "ocpus": 2, "memory_gb": 8, "auth": "instance_principal",
             "region": "eu-frankfurt-1"},
    ),
}


def _golden_settings(tmp_path: Path, oci: dict) -> config.Settings:
    base = {
        "config_file": "/home/user/.oci/config",
        "subnet_id": OCI_ENV["INVOKE_OCI_SUBNET_ID"],
        "compartment_id": OCI_ENV["INVOKE_OCI_COMPARTMENT_ID"],
        "availability_domains": OCI_ENV["INVOKE_OCI_AVAILABILITY_DOMAINS"],
    }
    return settings_for(tmp_path, {**base, **oci})


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_rendered_tree_matches_golden(tmp_path: Path, case: str) -> None:
    spec = GOLDEN_CASES[case]
    files = rendered(_golden_settings(tmp_path, spec["oci"]), version=spec["version"])
    golden = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in files.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
    on_disk = {str(p.relative_to(golden)): p.read_text() for p in golden.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(files), "file set differs; regenerate with UPDATE_GOLDEN=1 if intended"
    for rel, text in files.items():
        assert text == on_disk[rel], f"{case}/{rel} differs from the golden file"


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_rendered_hcl_parses_and_carries_the_sources(tmp_path: Path, case: str) -> None:
    """python-hcl2 parses every rendered HCL file (for >= 1.7 this is the offline check: no such Packer here)."""
    spec = GOLDEN_CASES[case]
    files = rendered(_golden_settings(tmp_path, spec["oci"]), version=spec["version"])
    doc = clustercheck.parse_hcl(files[packer.TEMPLATE], packer.TEMPLATE)
    sources = {(k, name): body for s in doc["source"] for k, v in s.items() for name, body in v.items()}
    oci, qemu = sources[("oracle-oci", "almalinux")], sources[("qemu", "almalinux")]
    variables = {k: v for var in doc["variable"] for k, v in var.items()}
    assert variables["nomad_version"]["default"] == "1.10.3"
    assert all("description" in v and "type" in v for v in variables.values())
    assert qemu["disk_image"] is True and qemu["format"] == "qcow2" and qemu["cd_label"] == "cidata"
    assert doc["build"]["post-processor"]["manifest"]["output"] == "manifest.json"
    flex = "Flex" in spec["oci"].get("shape", "")
    assert ("shape_config" in oci) == flex
    if spec["oci"].get("auth") == "instance_principal":
        assert oci["use_instance_principals"] is True and "access_cfg_file" not in oci
    else:
        assert "access_cfg_file" in oci and "access_cfg_file_account" in oci
    if packer.has_plugins(spec["version"]):
        plugins = clustercheck.parse_hcl(files[packer.PLUGINS_FILE], packer.PLUGINS_FILE)["packer"]["required_plugins"]
        assert plugins["oracle"]["source"] == "github.com/hashicorp/oracle"
        assert plugins["qemu"]["source"] == "github.com/hashicorp/qemu"
    else:
        assert packer.PLUGINS_FILE not in files


def test_base_image_ocid_replaces_the_filter(tmp_path: Path) -> None:
    data = imagedef.load("almalinux9")
    data = imagedef.parse(
        tmp_path / "byocid.yaml",
        {"name": "byocid", "image_name": "x", "versions": {"docker_ce": "1.2.3", "nomad": "1.2.3", "consul": "1.2.3"},
         "oci": {"base_image_ocid": "ocid1.image.oc1.eu-frankfurt-1.aaaa"}},
    )
    ctx = packer.build_context(settings_for(tmp_path), data, (1, 6, 6), "tcg", TEST_KEY)
    text = packer.render_files(ctx)[packer.TEMPLATE]
    assert "base_image_ocid         = var.base_image_ocid" in text and "base_image_filter" not in text


def test_expected_facts_come_from_imagefacts(tmp_path: Path) -> None:
    from nomadic import imagefacts

    expected = rendered(settings_for(tmp_path))["nomadic-files/expected.txt"]
    assert f"dir {imagefacts.CONSUL_CONFIG_DIR.path} root consul 0750" in expected
    assert "firewalld consul 8300/tcp 8301/tcp 8301/udp 8500/tcp 8600/tcp 8600/udp" in expected
    assert "firewalld nomad 4646/tcp 4647/tcp 4648/tcp 4648/udp" in expected
    for path in imagefacts.ABSENT_PATHS:
        assert f"absent {path}\n" in expected
    low, high = imagefacts.EPHEMERAL_PORT_RANGE
    assert low > imagefacts.NOMAD_DYNAMIC_PORTS[1] and f"sysctl net.ipv4.ip_local_port_range {low} {high}" in expected


def test_seed_user_data_passes_cloud_init_24_4_schema(tmp_path: Path) -> None:
    """The qemu build's NoCloud seed against cloud-init 24.4's schema (what AlmaLinux 9 ships)."""
    user_data = rendered(settings_for(tmp_path))["seed/user-data"]
    assert user_data.startswith("#cloud-config\n") and TEST_KEY in user_data
    assert nodecheck.schema_errors_24_4(user_data) == []


def test_seed_user_data_passes_installed_cloud_init_schema(tmp_path: Path) -> None:
    require_tool("cloud-init")
    path = tmp_path / "user-data"
    path.write_text(rendered(settings_for(tmp_path))["seed/user-data"])
    check = nodecheck.cloud_init_schema_check(path, "seed")
    assert check.ok and not check.skipped, check.line()


# ---- packer validate, for real -------------------------------------------------------------------------------


def oci_settings(tmp_path: Path, **extra: object) -> config.Settings:
    cfg = make_oci_config(tmp_path / "oci")
    oci = {
        "config_file": str(cfg),
        "subnet_id": OCI_ENV["INVOKE_OCI_SUBNET_ID"],
        "compartment_id": OCI_ENV["INVOKE_OCI_COMPARTMENT_ID"],
        "availability_domains": OCI_ENV["INVOKE_OCI_AVAILABILITY_DOMAINS"],
        **extra,
    }
    return settings_for(tmp_path, oci)


def test_packer_validate_passes_on_both_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real `packer validate` (Debian's 1.6.6 in CI) over both sources; the oracle-oci source reads the throwaway
    config and key (1.6.6 parses the key in validate), nothing reaches OCI."""
    require_tool("packer")
    s = oci_settings(tmp_path)
    written = imagebuild.render_templates(s)
    out = imagebuild.build_dir(s)
    assert out / packer.TEMPLATE in written and (out / "scripts" / "99-check-image.sh") in written
    assert (out / "ssh" / "build_key").stat().st_mode & 0o777 == 0o600
    imagebuild.validate_templates(s)
    assert "packer validate passed (both sources)" in capsys.readouterr().err


def test_packer_validate_without_oci_config_checks_qemu_only_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("packer")
    s = settings_for(tmp_path, {"config_file": str(tmp_path / "missing")})
    imagebuild.validate_templates(s)
    err = capsys.readouterr().err
    assert "validating only the qemu source: OCI config file" in err and "(qemu.almalinux)" in err


def test_packer_validate_really_checks(tmp_path: Path) -> None:
    """The check can fail: a broken OCI key makes 1.6.6's oracle-oci source invalid."""
    require_tool("packer")
    s = oci_settings(tmp_path)
    imagebuild.render_templates(s)
    (tmp_path / "oci" / "oci_api_key.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nbroken\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(CommandFailed, match="packer validate failed with exit code 1: 'key_file' must be specified"):
        imagebuild.validate_templates(s)


def test_packer_validate_runs_the_variable_validations(tmp_path: Path) -> None:
    require_tool("packer")
    s = oci_settings(tmp_path)
    imagebuild.render_templates(s)
    template = imagebuild.build_dir(s) / packer.TEMPLATE
    template.write_text(template.read_text().replace('default     = "tcg"', 'default     = "hvf"'))
    with pytest.raises(CommandFailed, match="The accelerator must be kvm or tcg"):
        imagebuild.validate_templates(s)


def test_pkcs8_key_with_packer_1_6_is_a_clear_error(tmp_path: Path) -> None:
    cfg = make_oci_config(tmp_path / "oci", pkcs1=False)
    s = settings_for(tmp_path, {"config_file": str(cfg), "subnet_id": OCI_ENV["INVOKE_OCI_SUBNET_ID"],
                                "availability_domains": "AD-1"})
    problems = imagebuild.oci_problems(s, imagedef.load("almalinux9"), (1, 6, 6))
    assert len(problems) == 1 and "reads only PKCS#1 API keys" in problems[0].message
    assert "-traditional" in (problems[0].hint or "")
    assert imagebuild.oci_problems(s, imagedef.load("almalinux9"), (1, 11, 2)) == []


def test_flex_shape_with_packer_1_6_is_a_clear_error(tmp_path: Path) -> None:
    s = oci_settings(tmp_path, shape="VM.Standard.A1.Flex")
    problems = imagebuild.oci_problems(s, imagedef.load("almalinux9"), (1, 6, 6))
    assert [p.message for p in problems] == [
        "setting oci.shape = VM.Standard.A1.Flex is a Flex shape, which needs shape_config: Packer 1.6.6 lacks it"
    ]


# ---- manifest ------------------------------------------------------------------------------------------------


def write_manifest(path: Path, builds: list[dict], last: str = "run-2") -> Path:
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": last}))
    return path


def test_manifest_takes_the_last_run_of_the_target(tmp_path: Path) -> None:
    builds = [
        {"name": "almalinux", "builder_type": "qemu", "packer_run_uuid": "run-1", "artifact_id": "VM",
         "files": [{"name": "output/old/old.qcow2", "size": 1}], "custom_data": {"image_name": "old"}},
        {"name": "almalinux", "builder_type": "qemu", "packer_run_uuid": "run-2", "artifact_id": "VM",
         "files": [{"name": "output/new/new.qcow2", "size": 1}], "custom_data": {"image_name": "new"}},
        {"name": "almalinux", "builder_type": "oracle-oci", "packer_run_uuid": "run-2",
         "artifact_id": "ocid1.image.oc1.eu-frankfurt-1.aaaa", "files": None, "custom_data": {}},
    ]
    m = write_manifest(tmp_path / "manifest.json", builds)
    qemu = packer.parse_manifest(m, Target.QEMU)
    assert qemu.files == ("output/new/new.qcow2",) and qemu.custom_data["image_name"] == "new"
    assert packer.parse_manifest(m, Target.OCI).artifact_id == "ocid1.image.oc1.eu-frankfurt-1.aaaa"


def test_manifest_without_the_target_is_an_error(tmp_path: Path) -> None:
    m = write_manifest(tmp_path / "manifest.json", [], last="run-9")
    with pytest.raises(CommandFailed, match="has 0 oracle-oci builds for its last run"):
        packer.parse_manifest(m, Target.OCI)
    with pytest.raises(CommandFailed, match="Packer wrote no manifest"):
        packer.parse_manifest(tmp_path / "nope.json", Target.OCI)
