"""The emulator itself: authentication required, lifecycle progression, retry tokens, faults (via the real SDK)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import oci
import pytest

from nomadic import ociclient
from nomadic.providers.oci import OciProvider
from tests.ociemu import Emulator
from tests.ociemu.server import ADS, COMPARTMENT, IMAGE, MICRO, SUBNET
from tests.ociemu.testing import settings_for


def details(ip: str, ad: str = ADS[0]) -> oci.core.models.LaunchInstanceDetails:
    m = oci.core.models
    return m.LaunchInstanceDetails(
        compartment_id=COMPARTMENT, availability_domain=ad, shape=MICRO, display_name="x",
        source_details=m.InstanceSourceViaImageDetails(image_id=IMAGE),
        create_vnic_details=m.CreateVnicDetails(subnet_id=SUBNET, private_ip=ip),
    )


def test_unsigned_requests_are_refused() -> None:
    with Emulator() as emu:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{emu.url}/20160918/subnets/{SUBNET}", timeout=5)
        assert info.value.code == 401
        assert json.loads(info.value.read())["code"] == "NotAuthenticated"


def test_lifecycle_tokens_and_faults(tmp_path: Path) -> None:
    with Emulator(provisioning_delay=0.3, terminating_delay=0.3, micro_limit=1) as emu:
        settings = settings_for(emu, tmp_path)
        session = OciProvider(settings).session
        compute = ociclient.compute(session, retry=False)
        first = compute.launch_instance(details("10.0.0.5"), opc_retry_token="t1").data
        assert first.lifecycle_state == "PROVISIONING" and first.freeform_tags == {}
        again = compute.launch_instance(details("10.0.0.5"), opc_retry_token="t1").data
        assert again.id == first.id and len(emu.instances) == 1  # a replayed token makes no twin
        with pytest.raises(oci.exceptions.ServiceError) as info:
            compute.launch_instance(details("10.0.0.6"), opc_retry_token="t2")
        assert info.value.code == "LimitExceeded"
        time.sleep(0.35)
        assert compute.get_instance(first.id).data.lifecycle_state == "RUNNING"
        compute.terminate_instance(first.id, preserve_boot_volume=False)
        assert compute.get_instance(first.id).data.lifecycle_state == "TERMINATING"
        time.sleep(0.35)
        assert compute.get_instance(first.id).data.lifecycle_state == "TERMINATED"
        emu.capacity_ads = {ADS[1]}
        with pytest.raises(oci.exceptions.ServiceError) as info:
            compute.launch_instance(details("10.0.0.7", ADS[1]))
        assert (info.value.status, info.value.code, info.value.message) == (500, "InternalError", "Out of host capacity.")
        emu.throttle_launches = 1
        with pytest.raises(oci.exceptions.ServiceError) as info:
            compute.launch_instance(details("10.0.0.7"))
        assert info.value.status == 429
        net = ociclient.network(session)
        with pytest.raises(oci.exceptions.ServiceError) as info:
            net.get_subnet(SUBNET + "x")
        assert info.value.status == 404


def test_network_as_the_api_reference_describes_it(tmp_path: Path) -> None:
    """Default security list, NSG rules and deletion, VNIC nsgIds, invalidated tokens, label conflicts."""
    with Emulator() as emu:
        settings = settings_for(emu, tmp_path)
        session = OciProvider(settings).session
        compute, net = ociclient.compute(session, retry=False), ociclient.network(session, retry=False)
        m = oci.core.models
        subnet = net.get_subnet(SUBNET).data
        default = net.get_security_list(subnet.security_list_ids[0]).data
        assert [(r.protocol, r.source) for r in default.ingress_security_rules] == [
            ("6", "0.0.0.0/0"), ("1", "0.0.0.0/0"), ("1", "10.0.0.0/16")]
        assert default.ingress_security_rules[0].tcp_options.destination_port_range.min == 22
        group = net.create_network_security_group(
            m.CreateNetworkSecurityGroupDetails(compartment_id=COMPARTMENT, vcn_id=subnet.vcn_id), opc_retry_token="g1").data
        rule = m.AddSecurityRuleDetails(direction="INGRESS", protocol="6", source=group.id,
                                        source_type="NETWORK_SECURITY_GROUP",
                                        tcp_options=m.TcpOptions(destination_port_range=m.PortRange(min=8300, max=8300)))
        with pytest.raises(oci.exceptions.ServiceError) as info:  # at most 25 rules per call
            net.add_network_security_group_security_rules(group.id, m.AddNetworkSecurityGroupSecurityRulesDetails(security_rules=[rule] * 26))
        assert info.value.status == 400
        net.add_network_security_group_security_rules(group.id, m.AddNetworkSecurityGroupSecurityRulesDetails(security_rules=[rule]))
        assert [r.source for r in net.list_network_security_group_security_rules(group.id).data] == [group.id]
        body = details("10.0.0.5")
        body.create_vnic_details.nsg_ids = [group.id]
        body.create_vnic_details.hostname_label = "n1"
        inst = compute.launch_instance(body, opc_retry_token="t1").data
        other = details("10.0.0.6")
        other.create_vnic_details.hostname_label = "n1"
        with pytest.raises(oci.exceptions.ServiceError) as info:
            compute.launch_instance(other)
        assert (info.value.status, info.value.code) == (409, "Conflict")
        with pytest.raises(oci.exceptions.ServiceError) as info:  # same token, other details
            compute.launch_instance(details("10.0.0.7"), opc_retry_token="t1")
        assert info.value.code == "InvalidatedRetryToken" and "different parameters" in info.value.message
        with pytest.raises(oci.exceptions.ServiceError) as info:  # a VNIC is in the group
            net.delete_network_security_group(group.id)
        assert (info.value.status, info.value.code) == (409, "Conflict")
        compute.terminate_instance(inst.id)
        with pytest.raises(oci.exceptions.ServiceError) as info:  # same token, its instance terminated
            compute.launch_instance(body, opc_retry_token="t1")
        assert info.value.code == "InvalidatedRetryToken" and "terminated" in info.value.message
        emu.replay_terminated = True
        assert compute.launch_instance(body, opc_retry_token="t1").data.lifecycle_state == "TERMINATED"
        net.delete_network_security_group(group.id)
        assert net.get_network_security_group(group.id).data.lifecycle_state == "TERMINATED"
