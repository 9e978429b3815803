"""The emulator: core (compute, network, block storage) and identity calls on 127.0.0.1, in one thread.

State lives in memory. Instances move PROVISIONING -> RUNNING after `provisioning_delay` seconds (STARTING ->
RUNNING after `starting_delay` following an instance action START on a STOPPED one; Emulator.stop_instance stops one) and
TERMINATING -> TERMINATED after `terminating_delay`; faults are injected per call (see Fault, Emulator.inject).
Signatures are not verified, but every request must carry an Authorization header (else 401).
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from . import routes
from .routes import ApiError

MICRO = "VM.Standard.E2.1.Micro"
TENANCY = "ocid1.tenancy.oc1..aaaaemulatortenancy"
COMPARTMENT = "ocid1.compartment.oc1..aaaaemulatorcompartment"
OTHER_COMPARTMENT = "ocid1.compartment.oc1..aaaaemulatorothercomp"
SUBNET = "ocid1.subnet.oc1.iad.aaaaemulatorsubnet"
VCN = "ocid1.vcn.oc1.iad.aaaaemulatorvcn"
DEFAULT_SECURITY_LIST = "ocid1.securitylist.oc1.iad.aaaaemulatordefault"
IMAGE = "ocid1.image.oc1.iad.aaaaemulatorimage"
ARM_IMAGE = "ocid1.image.oc1.iad.aaaaemulatorarmimage"
ADS = ("Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2", "Uocm:US-ASHBURN-AD-3")


def _ocid(kind: str) -> str:
    return f"ocid1.{kind}.oc1.iad.{uuid.uuid4().hex}"


def _now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Fault:
    """One injected error: requests matching `method` and `route` get it `times` times (after `skip` matches)."""

    method: str
    route: str  # operation, e.g. "launch_instance" or "LaunchInstance", "get_subnet"
    status: int
    code: str
    message: str
    times: int = 1
    skip: int = 0
    when: Callable[[dict[str, Any]], bool] | None = None  # on the request body (launch) or query


@dataclass
class _Instance:
    data: dict[str, Any]
    created: float
    vnic: dict[str, Any]
    attachment_id: str
    boot_volume: dict[str, Any]
    terminated_at: float | None = None
    preserve_boot: bool = True
    stopped: bool = False
    started_at: float | None = None  # when the last START came (None: never stopped, runs since creation)


@dataclass
class Emulator:
    """Start with `with Emulator() as emu:`; `emu.url` is the oci.endpoint to use."""

    provisioning_delay: float = 0.0
    terminating_delay: float = 0.0
    starting_delay: float = 0.0
    cidr: str = "10.0.0.0/24"
    dns_label: str = "sub"
    micro_limit: int = 2  # the tenancy's service limit for E2.1.Micro (Always Free: 2)
    capacity_ads: set[str] = field(default_factory=set)  # ADs answering "Out of host capacity"
    throttle_launches: int = 0  # the next N launch requests get 429
    launch_delays: dict[int, float] = field(default_factory=dict)  # nth launch (1-based) answers after delay
    reserved_ips: list[str] = field(default_factory=list)  # foreign addresses in the subnet
    # OCI documents both answers to a reused retry token whose instance was terminated since: 409
    # InvalidatedRetryToken (the default here), or, within 24 hours, a replay of the terminated instance.
    replay_terminated: bool = False
    volumes_gb: list[int] = field(default_factory=list)  # foreign block volumes

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.instances: dict[str, _Instance] = {}
        self.retry_tokens: dict[str, str] = {}  # token -> instance id
        self.token_bodies: dict[str, str] = {}  # token -> the canonical request body it was first used with
        self.faults: list[Fault] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.launch_bodies: list[dict[str, Any]] = []
        self.launch_tokens: list[str | None] = []
        self.launch_count = 0
        self.actions: list[tuple[str, str]] = []  # (instance id, action) of every instance action accepted
        self.images = {
            IMAGE: {"shapes": [MICRO, "VM.Standard.E4.Flex", "VM.Standard.E5.Flex"], "name": "nomadic-almalinux9"},
            ARM_IMAGE: {"shapes": ["VM.Standard.A1.Flex"], "name": "arm-only"},
        }
        self.subnets = {SUBNET: {"cidr": self.cidr, "vcn": VCN}}
        from .network import init_network

        init_network(self)
        self.server: ThreadingHTTPServer | None = None

    # ---- lifecycle of the server -------------------------------------------------------------------
    def start(self) -> "Emulator":
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                emu._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="ociemu", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # ---- test helpers ---------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def add_instance(
        self,
        name: str,
        private_ip: str,
        tags: dict[str, str] | None = None,
        shape: str = MICRO,
        compartment: str = COMPARTMENT,
        boot_gb: int = 50,
        hostname: str | None = None,
    ) -> str:
        """A pre-existing instance (foreign or ours), RUNNING at once."""
        body = {
            "compartmentId": compartment,
            "availabilityDomain": ADS[0],
            "shape": shape,
            "displayName": name,
            "freeformTags": tags or {},
            "metadata": {},
            "sourceDetails": {"sourceType": "image", "imageId": IMAGE, "bootVolumeSizeInGBs": boot_gb},
            "createVnicDetails": {"subnetId": SUBNET, "privateIp": private_ip, "assignPublicIp": True,
                                  "hostnameLabel": hostname},
        }
        with self.lock:
            inst = self._create(body)
            inst.created -= 10**6
        return inst.data["id"]

    def state(self, instance_id: str) -> str:
        with self.lock:
            return self._state(self.instances[instance_id])

    def live(self, tag_value: str | None = None) -> list[dict[str, Any]]:
        """Instances not TERMINATED (optionally only those tagged with cluster `tag_value`), as API dicts."""
        with self.lock:
            out = []
            for inst in self.instances.values():
                if self._state(inst) == "TERMINATED":
                    continue
                if tag_value is not None and inst.data["freeformTags"].get("nomadic-cluster") != tag_value:
                    continue
                out.append(self._instance_json(inst))
            return out

    def stop_instance(self, instance_id: str) -> None:
        """What Oracle does to an idle Always Free instance (or a user in the console): it is STOPPED now."""
        with self.lock:
            inst = self.instances[instance_id]
            inst.stopped, inst.started_at = True, None

    def launch_calls(self) -> int:
        return self.calls["launch_instance"]

    # ---- state ----------------------------------------------------------------------------------------
    def _state(self, inst: _Instance) -> str:
        now = time.monotonic()
        if inst.terminated_at is not None:
            return "TERMINATED" if now >= inst.terminated_at + self.terminating_delay else "TERMINATING"
        if inst.stopped:
            return "STOPPED"
        if inst.started_at is not None:
            return "RUNNING" if now >= inst.started_at + self.starting_delay else "STARTING"
        return "RUNNING" if now >= inst.created + self.provisioning_delay else "PROVISIONING"

    def _instance_json(self, inst: _Instance) -> dict[str, Any]:
        return {**inst.data, "lifecycleState": self._state(inst)}

    def _used_ips(self, subnet: str) -> dict[str, str]:
        return {ip: vnic for ip, (vnic, _label) in self._private_ips(subnet).items()}

    def _private_ips(self, subnet: str) -> dict[str, tuple[str, str | None]]:
        """Address -> (VNIC id or "", hostname label) of everything holding an address in the subnet."""
        used: dict[str, tuple[str, str | None]] = {ip: ("", None) for ip in self.reserved_ips}
        for inst in self.instances.values():
            if inst.vnic["subnetId"] == subnet and self._state(inst) != "TERMINATED":
                used[inst.vnic["privateIp"]] = (inst.vnic["id"], inst.vnic.get("hostnameLabel"))
        return used

    def _check_label(self, label: str | None, subnet: str) -> None:
        """Hostname labels are unique within a subnet (case-insensitively, as DNS names are)."""
        if not label:
            return
        for other in self.instances.values():
            held = other.vnic.get("hostnameLabel") or ""
            if held.lower() == label.lower() and other.vnic["subnetId"] == subnet and self._state(other) != "TERMINATED":
                raise ApiError(409, "Conflict", f"Hostname label {label} is already in use in subnet {subnet}")

    def _check_nsgs(self, ids: list[str], subnet: str) -> list[str]:
        from .network import check_nsgs

        return check_nsgs(self, ids, self.subnets[subnet]["vcn"])

    def _create(self, body: dict[str, Any]) -> _Instance:
        vnic_in = body.get("createVnicDetails") or {}
        subnet = vnic_in.get("subnetId")
        if subnet not in self.subnets:
            raise ApiError(404, "NotAuthorizedOrNotFound", f"Subnet {subnet} not found or not authorized")
        network = ipaddress.IPv4Network(self.subnets[subnet]["cidr"])
        used = self._used_ips(subnet)
        ip = vnic_in.get("privateIp")
        if ip:
            if ipaddress.IPv4Address(ip) not in network:
                raise ApiError(400, "InvalidParameter", f"Private IP {ip} is not in the subnet's CIDR {network}")
            if ip in used:
                raise ApiError(409, "Conflict", f"Private IP {ip} is already in use")
        else:
            ip = next(str(a) for a in list(network.hosts())[1:] if str(a) not in used)
        label = vnic_in.get("hostnameLabel")
        self._check_label(label, subnet)
        iid = _ocid("instance")
        n = len(self.instances) + 1
        vnic = {
            "id": _ocid("vnic"),
            "subnetId": subnet,
            "privateIp": ip,
            # Loopback "public" IPs: anything a test tries to reach (ssh) stays on this machine.
            "publicIp": f"127.0.1.{n % 250 + 1}" if vnic_in.get("assignPublicIp", True) else None,
            "hostnameLabel": label,
            "nsgIds": self._check_nsgs(vnic_in.get("nsgIds") or [], subnet),
            "isPrimary": True,
            "lifecycleState": "AVAILABLE",
            "availabilityDomain": body.get("availabilityDomain"),
            "compartmentId": body.get("compartmentId"),
            "timeCreated": _now_text(),
        }
        source = body.get("sourceDetails") or {}
        boot = {
            "id": _ocid("bootvolume"),
            "compartmentId": body.get("compartmentId"),
            "availabilityDomain": body.get("availabilityDomain"),
            "sizeInGBs": source.get("bootVolumeSizeInGBs") or 47,
            "lifecycleState": "AVAILABLE",
            "displayName": f"{body.get('displayName')} (Boot Volume)",
            "timeCreated": _now_text(),
        }
        data = {
            "id": iid,
            "compartmentId": body.get("compartmentId"),
            "availabilityDomain": body.get("availabilityDomain"),
            "faultDomain": body.get("faultDomain") or "FAULT-DOMAIN-1",
            "displayName": body.get("displayName") or iid,
            "shape": body.get("shape"),
            "shapeConfig": {
                "ocpus": (body.get("shapeConfig") or {}).get("ocpus") or 1.0,
                "memoryInGBs": (body.get("shapeConfig") or {}).get("memoryInGBs") or 1.0,
            },
            "imageId": source.get("imageId"),
            "sourceDetails": {"sourceType": "image", "imageId": source.get("imageId")},
            "freeformTags": body.get("freeformTags") or {},
            "metadata": body.get("metadata") or {},
            "region": "iad",
            "timeCreated": _now_text(),
        }
        inst = _Instance(data, time.monotonic(), vnic, _ocid("vnicattachment"), boot)
        self.instances[iid] = inst
        return inst

    # ---- HTTP -------------------------------------------------------------------------------------------
    ROUTES = routes.ROUTES  # extended by the modules of other services (see routes.py)

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(req.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        length = int(req.headers.get("content-length") or 0)
        raw = req.rfile.read(length) if length else b""
        status, payload, headers = 404, {"code": "NotFound", "message": f"no route {req.command} {parsed.path}"}, {}
        delay = 0.0
        for method, pattern, name in self.ROUTES:
            m = pattern.match(parsed.path)
            if method != req.command or not m:
                continue
            try:
                body = json.loads(raw) if raw else {}
                with self.lock:
                    self.calls[name] += 1
                    if not req.headers.get("authorization"):
                        raise ApiError(401, "NotAuthenticated", "The required information to complete authentication was not provided")
                    self._fault(name, body or query)
                    if name == "launch_instance":
                        self.launch_count += 1
                        delay = self.launch_delays.get(self.launch_count, 0.0)
                    handler = routes.HANDLERS.get(name)
                    kwargs = dict(query=query, body=body, token=req.headers.get("opc-retry-token"), **m.groupdict())
                    if handler is not None:
                        status, payload, headers = handler(self, **kwargs)
                    else:
                        status, payload, headers = getattr(self, "_" + name)(**kwargs)
            except ApiError as err:
                status, payload, headers = err.status, {"code": err.code, "message": err.message}, {}
            break
        if delay:
            time.sleep(delay)  # the instance exists already; the answer is late (a client may be gone by then)
        data = b"" if status == 204 else json.dumps(payload).encode()
        try:
            req.send_response(status)
            req.send_header("content-type", "application/json")
            req.send_header("opc-request-id", uuid.uuid4().hex)
            for k, v in headers.items():
                req.send_header(k, v)
            req.send_header("content-length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fault(self, name: str, body: dict[str, Any]) -> None:
        for fault in self.faults:
            if routes.operation_name(fault.route) != name or fault.times <= 0 or (fault.when and not fault.when(body)):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.times -= 1
            raise ApiError(fault.status, fault.code, fault.message)
        if name == "launch_instance":
            if self.throttle_launches > 0:
                self.throttle_launches -= 1
                raise ApiError(429, "TooManyRequests", "Too many requests for the user")
            if body.get("availabilityDomain") in self.capacity_ads:
                raise ApiError(500, "InternalError", "Out of host capacity.")

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        limit = int(query.get("limit") or 25)
        start = int(query.get("page") or 0)
        chunk = items[start : start + limit]
        headers = {"opc-next-page": str(start + limit)} if start + limit < len(items) else {}
        return 200, chunk, headers

    # ---- identity -----------------------------------------------------------------------------------------
    def _list_availability_domains(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        if not query.get("compartmentId", "").startswith("ocid1.tenancy"):
            raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        return 200, [{"name": ad, "id": f"ocid1.availabilitydomain.oc1..{i}", "compartmentId": TENANCY} for i, ad in enumerate(ADS)], {}

    def _list_compartments(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        comps = [
            {"id": c, "compartmentId": TENANCY, "name": c[-8:], "lifecycleState": "ACTIVE", "description": "",
             "timeCreated": _now_text()}
            for c in (COMPARTMENT, OTHER_COMPARTMENT)
        ]
        return self._page(comps, query)

    # ---- compute --------------------------------------------------------------------------------------------
    def _list_instances(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        comp = query.get("compartmentId")
        items = [self._instance_json(i) for i in self.instances.values() if i.data["compartmentId"] == comp]
        return self._page(items, query)

    def _launch_instance(self, body: dict[str, Any], token: str | None, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if token and token in self.retry_tokens:
            return self._replay(token, body)
        for key in ("compartmentId", "availabilityDomain", "shape"):
            if not body.get(key):
                raise ApiError(400, "MissingParameter", f"Missing {key}")
        image = (body.get("sourceDetails") or {}).get("imageId")
        if image not in self.images:
            raise ApiError(404, "NotAuthorizedOrNotFound", f"Image {image} not found")
        if body["shape"] not in self.images[image]["shapes"]:
            raise ApiError(400, "InvalidParameter", f"Shape {body['shape']} is not valid for image {image}")
        if body["shape"] == MICRO:
            live = sum(
                1 for i in self.instances.values() if i.data["shape"] == MICRO and self._state(i) != "TERMINATED"
            )
            if live >= self.micro_limit:
                raise ApiError(
                    400,
                    "LimitExceeded",
                    "The following service limits were exceeded: standard-e2-micro-core-count. "
                    "Request a service limit increase from the service limits page in the console.",
                )
        self.launch_bodies.append(body)
        self.launch_tokens.append(token)
        inst = self._create(body)
        if token:
            self.retry_tokens[token] = inst.data["id"]
            self.token_bodies[token] = json.dumps(body, sort_keys=True)
        return 200, self._instance_json(inst), {}

    def _replay(self, token: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """A reused retry token: the same request replays its instance; OCI invalidates the token otherwise."""
        inst = self.instances[self.retry_tokens[token]]
        if self.token_bodies.get(token) != json.dumps(body, sort_keys=True):
            raise ApiError(409, "InvalidatedRetryToken", "The retry token was already used for a request with different parameters")
        if inst.terminated_at is not None and not self.replay_terminated:
            raise ApiError(409, "InvalidatedRetryToken", "The instance created with this retry token has since been terminated")
        return 200, self._instance_json(inst), {}

    def _get_inst(self, id: str) -> _Instance:
        if id not in self.instances:
            raise ApiError(404, "NotAuthorizedOrNotFound", f"Instance {id} not found")
        return self.instances[id]

    def _get_instance(self, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, self._instance_json(self._get_inst(id)), {}

    def _terminate_instance(self, id: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        inst = self._get_inst(id)
        if inst.terminated_at is None:
            inst.terminated_at = time.monotonic()
            inst.preserve_boot = query.get("preserveBootVolume", "true").lower() != "false"
        return 204, None, {}

    def _instance_action(self, id: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        inst = self._get_inst(id)
        action, state = query.get("action", ""), self._state(inst)
        if action not in ("START", "STOP"):
            raise ApiError(400, "InvalidParameter", f"Unsupported action {action!r}")
        if state not in ("RUNNING", "STOPPED", "STARTING"):
            raise ApiError(409, "IncorrectState", f"Instance {id} is {state}")
        if action == "START" and state == "STOPPED":
            inst.stopped, inst.started_at = False, time.monotonic()
        elif action == "STOP":
            inst.stopped, inst.started_at = True, None
        self.actions.append((id, action))
        return 200, self._instance_json(inst), {}

    def _list_vnic_attachments(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        items = []
        for inst in self.instances.values():
            if inst.data["compartmentId"] != query.get("compartmentId"):
                continue
            if query.get("instanceId") and query["instanceId"] != inst.data["id"]:
                continue
            state = self._state(inst)
            att_state = {
                "PROVISIONING": "ATTACHING", "RUNNING": "ATTACHED", "STARTING": "ATTACHED", "STOPPED": "ATTACHED",
                "TERMINATING": "DETACHING",
            }.get(state, "DETACHED")  # a stopped instance keeps its VNIC
            items.append({
                "id": inst.attachment_id, "instanceId": inst.data["id"], "vnicId": inst.vnic["id"],
                "subnetId": inst.vnic["subnetId"], "lifecycleState": att_state,
                "availabilityDomain": inst.data["availabilityDomain"], "compartmentId": inst.data["compartmentId"],
                "timeCreated": inst.data["timeCreated"],
            })
        return self._page(items, query)

    def _get_vnic(self, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        for inst in self.instances.values():
            if inst.vnic["id"] == id:
                return 200, inst.vnic, {}
        raise ApiError(404, "NotAuthorizedOrNotFound", f"VNIC {id} not found")

    def _list_images(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        return self._page([self._image_json(i) for i in self.images], query)

    def _image_json(self, id: str) -> dict[str, Any]:
        return {"id": id, "compartmentId": COMPARTMENT, "displayName": self.images[id]["name"],
                "lifecycleState": "AVAILABLE", "operatingSystem": "AlmaLinux", "createImageAllowed": True,
                "timeCreated": _now_text()}

    def _get_image(self, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if id not in self.images:
            raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        return 200, self._image_json(id), {}

    def _list_image_shapes(self, id: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        if id not in self.images:
            raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        return self._page([{"imageId": id, "shape": s} for s in self.images[id]["shapes"]], query)

    # ---- network ----------------------------------------------------------------------------------------------
    def _get_subnet(self, id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if id not in self.subnets:
            raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        return 200, {
            "id": id, "cidrBlock": self.subnets[id]["cidr"], "compartmentId": COMPARTMENT,
            "vcnId": self.subnets[id]["vcn"], "dnsLabel": self.dns_label or None,
            "prohibitPublicIpOnVnic": False, "lifecycleState": "AVAILABLE", "routeTableId": "x",
            "securityListIds": list(self.subnet_security_lists), "timeCreated": _now_text(), "virtualRouterIp": "10.0.0.1",
            "virtualRouterMac": "00:00:00:00:00:01",
        }, {}

    def _list_private_ips(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        subnet = query.get("subnetId", "")
        if subnet not in self.subnets:
            raise ApiError(404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found")
        items = [
            {"id": _ocid("privateip"), "ipAddress": ip, "subnetId": subnet, "vnicId": vnic or None,
             "hostnameLabel": label, "isPrimary": True, "timeCreated": _now_text()}
            for ip, (vnic, label) in sorted(self._private_ips(subnet).items())
        ]
        return self._page(items, query)

    # ---- block storage ------------------------------------------------------------------------------------------
    def _list_boot_volumes(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        items = []
        for inst in self.instances.values():
            if inst.boot_volume["compartmentId"] != query.get("compartmentId"):
                continue
            gone = self._state(inst) == "TERMINATED" and not inst.preserve_boot
            items.append({**inst.boot_volume, "lifecycleState": "TERMINATED" if gone else "AVAILABLE"})
        return self._page(items, query)

    def _list_volumes(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        items = []
        if query.get("compartmentId") == COMPARTMENT:
            items = [
                {"id": f"ocid1.volume.oc1.iad.v{i}", "compartmentId": COMPARTMENT, "availabilityDomain": ADS[0],
                 "sizeInGBs": gb, "sizeInMBs": gb * 1024, "lifecycleState": "AVAILABLE", "displayName": f"v{i}",
                 "timeCreated": _now_text()}
                for i, gb in enumerate(self.volumes_gb)
            ]
        return self._page(items, query)


def write_oci_config(folder: Path, profile: str = "DEFAULT") -> Path:
    """A throwaway API-key profile (fresh RSA key) for the SDK to sign requests to the emulator with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = folder / "oci_api_key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    config = folder / "config"
    config.write_text(
        f"[{profile}]\n"
        "user=ocid1.user.oc1..aaaaemulatoruser\n"
        "fingerprint=aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99\n"
        f"tenancy={TENANCY}\n"
        "region=us-ashburn-1\n"
        f"key_file={key_file}\n",
        encoding="utf-8",
    )
    return config


for _method, _path, _name in [
    ("GET", r"/20160918/availabilityDomains", "list_availability_domains"),
    ("GET", r"/20160918/compartments", "list_compartments"),
    ("GET", r"/20160918/instances", "list_instances"),
    ("POST", r"/20160918/instances", "launch_instance"),
    ("GET", r"/20160918/instances/(?P<id>[^/]+)", "get_instance"),
    ("DELETE", r"/20160918/instances/(?P<id>[^/]+)", "terminate_instance"),
    ("POST", r"/20160918/instances/(?P<id>[^/]+)", "instance_action"),
    ("GET", r"/20160918/vnicAttachments", "list_vnic_attachments"),
    ("GET", r"/20160918/vnics/(?P<id>[^/]+)", "get_vnic"),
    ("GET", r"/20160918/subnets/(?P<id>[^/]+)", "get_subnet"),
    ("GET", r"/20160918/privateIps", "list_private_ips"),
    ("GET", r"/20160918/images", "list_images"),
    ("GET", r"/20160918/images/(?P<id>[^/]+)", "get_image"),
    ("GET", r"/20160918/images/(?P<id>[^/]+)/shapes", "list_image_shapes"),
    ("GET", r"/20160918/bootVolumes", "list_boot_volumes"),
    ("GET", r"/20160918/volumes", "list_volumes"),
]:
    routes.add(_method, _path, _name)

from . import network  # noqa: E402,F401  (registers the VCN, security list and NSG operations)
