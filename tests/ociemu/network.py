"""VCN, security lists and network security groups (NSGs), as OCI's Networking API reference describes them.

- A new VCN comes with a default security list: ingress TCP 22 from 0.0.0.0/0, ICMP type 3 code 4 from
  0.0.0.0/0, ICMP type 3 from the VCN's CIDR; egress everything. The subnet uses it. Nothing else is open.
- NSGs: create (with opc-retry-token), get, list (by compartment, optionally VCN), delete (409 Conflict while any
  VNIC is in the group; a deleted group is listed as TERMINATED), add rules (at most 25 per call; a rule whose
  source type is NETWORK_SECURITY_GROUP must name a group of the same VCN), remove rules, list rules, list VNICs.
- VNICs carry nsgIds (at most 5), set at launch (createVnicDetails.nsgIds) or by UpdateVnic.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import uuid
from typing import Any

from .routes import ApiError, route

MAX_RULES_PER_CALL = 25
MAX_NSGS_PER_VNIC = 5


def init_network(emu: Any) -> None:
    from .server import DEFAULT_SECURITY_LIST, VCN, _now_text

    subnet_net = ipaddress.IPv4Network(emu.cidr)
    vcn_cidr = str(subnet_net.supernet(new_prefix=16)) if subnet_net.prefixlen > 16 else str(subnet_net)
    emu.vcns = {VCN: {"id": VCN, "cidrBlock": vcn_cidr, "compartmentId": _compartment(), "displayName": "vcn",
                      "defaultSecurityListId": DEFAULT_SECURITY_LIST, "lifecycleState": "AVAILABLE",
                      "timeCreated": _now_text()}}
    emu.security_lists = {DEFAULT_SECURITY_LIST: default_security_list(DEFAULT_SECURITY_LIST, VCN, vcn_cidr)}
    emu.subnet_security_lists = [DEFAULT_SECURITY_LIST]
    emu.nsgs = {}  # id -> {"data": {...}, "rules": {rule id: rule}}
    emu.nsg_tokens = {}  # retry token -> (nsg id, canonical body)


def _compartment() -> str:
    from .server import COMPARTMENT

    return COMPARTMENT


def default_security_list(sl_id: str, vcn: str, vcn_cidr: str) -> dict[str, Any]:
    from .server import _now_text

    def icmp(source: str, code: int | None) -> dict[str, Any]:
        return {"protocol": "1", "source": source, "sourceType": "CIDR_BLOCK", "isStateless": False,
                "icmpOptions": {"type": 3, **({"code": code} if code is not None else {})}}

    return {
        "id": sl_id, "vcnId": vcn, "compartmentId": _compartment(), "displayName": "Default Security List for vcn",
        "lifecycleState": "AVAILABLE", "timeCreated": _now_text(),
        "ingressSecurityRules": [
            {"protocol": "6", "source": "0.0.0.0/0", "sourceType": "CIDR_BLOCK", "isStateless": False,
             "tcpOptions": {"destinationPortRange": {"min": 22, "max": 22}}},
            icmp("0.0.0.0/0", 4),
            icmp(vcn_cidr, None),
        ],
        "egressSecurityRules": [
            {"protocol": "all", "destination": "0.0.0.0/0", "destinationType": "CIDR_BLOCK", "isStateless": False},
        ],
    }


def check_nsgs(emu: Any, ids: list[str], vcn: str) -> list[str]:
    if len(ids) > MAX_NSGS_PER_VNIC:
        raise ApiError(400, "InvalidParameter", f"A VNIC can be in at most {MAX_NSGS_PER_VNIC} network security groups")
    for nsg_id in ids:
        nsg = emu.nsgs.get(nsg_id)
        if nsg is None or nsg["data"]["lifecycleState"] == "TERMINATED":
            raise ApiError(404, "NotAuthorizedOrNotFound", f"Network security group {nsg_id} not found")
        if nsg["data"]["vcnId"] != vcn:
            raise ApiError(400, "InvalidParameter", f"Network security group {nsg_id} is not in the VNIC's VCN")
    return list(ids)


def _vnics_in(emu: Any, nsg_id: str) -> list[Any]:
    return [i for i in emu.instances.values() if nsg_id in (i.vnic.get("nsgIds") or []) and emu._state(i) != "TERMINATED"]


def _nsg(emu: Any, id: str) -> dict[str, Any]:
    nsg = emu.nsgs.get(id)
    if nsg is None:
        raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
    return nsg


def _page(emu: Any, items: list[Any], query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    return emu._page(items, query)


@route("GET", r"/20160918/vcns/(?P<id>[^/]+)", "get_vcn")
def get_vcn(emu: Any, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
    if id not in emu.vcns:
        raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
    return 200, emu.vcns[id], {}


@route("GET", r"/20160918/securityLists/(?P<id>[^/]+)", "get_security_list")
def get_security_list(emu: Any, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
    if id not in emu.security_lists:
        raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
    return 200, emu.security_lists[id], {}


@route("POST", r"/20160918/networkSecurityGroups", "create_network_security_group")
def create_nsg(emu: Any, body: dict[str, Any], token: str | None, **_: Any) -> tuple[int, Any, dict[str, str]]:
    from .server import _now_text

    canonical = json.dumps(body, sort_keys=True)
    if token and token in emu.nsg_tokens:
        nsg_id, first = emu.nsg_tokens[token]
        if first != canonical:
            raise ApiError(409, "InvalidatedRetryToken", "The retry token was already used for a request with different parameters")
        return 200, emu.nsgs[nsg_id]["data"], {}
    for key in ("compartmentId", "vcnId"):
        if not body.get(key):
            raise ApiError(400, "MissingParameter", f"Missing {key}")
    if body["vcnId"] not in emu.vcns:
        raise ApiError(404, "NotAuthorizedOrNotFound", f"VCN {body['vcnId']} not found")
    nsg_id = f"ocid1.networksecuritygroup.oc1.iad.{uuid.uuid4().hex}"
    data = {"id": nsg_id, "compartmentId": body["compartmentId"], "vcnId": body["vcnId"],
            "displayName": body.get("displayName") or nsg_id, "freeformTags": body.get("freeformTags") or {},
            "lifecycleState": "AVAILABLE", "timeCreated": _now_text()}
    emu.nsgs[nsg_id] = {"data": data, "rules": {}}
    if token:
        emu.nsg_tokens[token] = (nsg_id, canonical)
    return 200, data, {}


@route("GET", r"/20160918/networkSecurityGroups", "list_network_security_groups")
def list_nsgs(emu: Any, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
    if not query.get("compartmentId") and not query.get("vlanId") and not query.get("vcnId"):
        raise ApiError(400, "MissingParameter", "Missing compartmentId")
    items = [
        n["data"] for n in emu.nsgs.values()
        if (not query.get("compartmentId") or n["data"]["compartmentId"] == query["compartmentId"])
        and (not query.get("vcnId") or n["data"]["vcnId"] == query["vcnId"])
    ]
    return _page(emu, items, query)


@route("GET", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)", "get_network_security_group")
def get_nsg(emu: Any, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
    return 200, _nsg(emu, id)["data"], {}


@route("DELETE", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)", "delete_network_security_group")
def delete_nsg(emu: Any, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
    nsg = _nsg(emu, id)
    if nsg["data"]["lifecycleState"] == "TERMINATED":
        raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
    if _vnics_in(emu, id):
        raise ApiError(409, "Conflict", f"Network security group {id} has VNICs in it and cannot be deleted")
    nsg["data"]["lifecycleState"] = "TERMINATED"
    return 204, None, {}


@route("GET", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)/vnics", "list_network_security_group_vnics")
def list_nsg_vnics(emu: Any, id: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
    from .server import _now_text

    _nsg(emu, id)
    items = [{"vnicId": i.vnic["id"], "resourceId": i.data["id"], "timeAssociated": _now_text()} for i in _vnics_in(emu, id)]
    return _page(emu, items, query)


@route("GET", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)/securityRules", "list_network_security_group_security_rules")
def list_rules(emu: Any, id: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
    rules = list(_nsg(emu, id)["rules"].values())
    if query.get("direction"):
        rules = [r for r in rules if r["direction"] == query["direction"]]
    return _page(emu, rules, query)


@route("POST", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)/actions/addSecurityRules",
       "add_network_security_group_security_rules")
def add_rules(emu: Any, id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any, dict[str, str]]:
    from .server import _now_text

    nsg = _nsg(emu, id)
    wanted = body.get("securityRules") or []
    if len(wanted) > MAX_RULES_PER_CALL:
        raise ApiError(400, "InvalidParameter", f"At most {MAX_RULES_PER_CALL} security rules per request")
    added = []
    for rule in wanted:
        _check_rule(emu, nsg, rule)
        stored = {**copy.deepcopy(rule), "id": uuid.uuid4().hex[:6].upper(), "isValid": True, "timeCreated": _now_text()}
        stored.setdefault("isStateless", False)
        nsg["rules"][stored["id"]] = stored
        added.append(stored)
    return 200, {"securityRules": added}, {}


def _check_rule(emu: Any, nsg: dict[str, Any], rule: dict[str, Any]) -> None:
    if rule.get("direction") not in ("INGRESS", "EGRESS"):
        raise ApiError(400, "InvalidParameter", "direction must be INGRESS or EGRESS")
    if rule.get("protocol") not in ("all", "1", "6", "17", "58"):
        raise ApiError(400, "InvalidParameter", f"Unsupported protocol {rule.get('protocol')!r}")
    end = "source" if rule["direction"] == "INGRESS" else "destination"
    kind = rule.get(f"{end}Type") or "CIDR_BLOCK"
    value = rule.get(end)
    if not value:
        raise ApiError(400, "MissingParameter", f"Missing {end}")
    if kind == "NETWORK_SECURITY_GROUP":
        other = emu.nsgs.get(value)
        if other is None or other["data"]["vcnId"] != nsg["data"]["vcnId"]:
            raise ApiError(400, "InvalidParameter", f"{end} {value} is not a network security group of this VCN")
    elif kind == "CIDR_BLOCK":
        try:
            ipaddress.ip_network(value)
        except ValueError:
            raise ApiError(400, "InvalidParameter", f"{end} {value!r} is not a CIDR block") from None
    for options in ("tcpOptions", "udpOptions"):
        ports = (rule.get(options) or {}).get("destinationPortRange")
        if ports and not (1 <= ports["min"] <= ports["max"] <= 65535):
            raise ApiError(400, "InvalidParameter", "destinationPortRange must be 1..65535 with min <= max")


@route("POST", r"/20160918/networkSecurityGroups/(?P<id>[^/]+)/actions/removeSecurityRules",
       "remove_network_security_group_security_rules")
def remove_rules(emu: Any, id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any, dict[str, str]]:
    nsg = _nsg(emu, id)
    for rule_id in body.get("securityRuleIds") or []:
        nsg["rules"].pop(rule_id, None)
    return 200, {}, {}


@route("PUT", r"/20160918/vnics/(?P<id>[^/]+)", "update_vnic")
def update_vnic(emu: Any, id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any, dict[str, str]]:
    for inst in emu.instances.values():
        if inst.vnic["id"] == id and emu._state(inst) != "TERMINATED":
            if "nsgIds" in body and body["nsgIds"] is not None:
                vcn = emu.subnets[inst.vnic["subnetId"]]["vcn"]
                inst.vnic["nsgIds"] = check_nsgs(emu, list(body["nsgIds"]), vcn)
            return 200, inst.vnic, {}
    raise ApiError(404, "NotAuthorizedOrNotFound", f"VNIC {id} not found")
