"""OCI provider: launch, find and terminate a cluster's instances with the oci SDK, tolerant of Always Free's failures."""

from __future__ import annotations

import hashlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ... import artifacts, keys, nodeconfig, ociclient
from ...config import FREE_TIER_SHAPE, OCID_RE, Settings, Target, is_flex
from ...errors import CapacityError, CloudError, ConfigError, Interrupted, LimitExceeded, NomadicError
from ...plan import Node, Plan, Role
from ..base import GONE_STATES, NodeStatus, Progress

TAG_CLUSTER = "nomadic-cluster"
TAG_NODE = "nomadic-node"
TAG_ROLE = "nomadic-role"
TAG_ADDRESS = "nomadic-address"  # the planned private IP, known before the VNIC is

FREE_MICRO_INSTANCES = 2
FREE_STORAGE_GB = 200
FREE_A1_OCPUS = 4.0
FREE_A1_MEMORY_GB = 24.0
A1_SHAPE = "VM.Standard.A1.Flex"

THROTTLE_RETRIES = 8  # 429s in a row for one request before giving up
TRANSPORT_RETRIES = 3  # lost connections for one request (safe: same opc-retry-token)
REPLAY_LIMIT = 5  # retry tokens that replay an old, terminated instance before giving up
WAIT_DONE = ("RUNNING", "STOPPING", "STOPPED", "TERMINATING", "TERMINATED")
START_DONE = ("RUNNING", "TERMINATING", "TERMINATED")  # a STOPPED answer just after START is the old state


def retry_token(cluster: str, node: str, attempt: int) -> str:
    """Deterministic per cluster, node and attempt: a resent request returns the same instance, never a twin."""
    digest = hashlib.sha256(f"{cluster}\0{node}\0{attempt}".encode()).hexdigest()
    return f"nomadic-{digest[:48]}"


def backoff(n: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with equal jitter: between half and all of min(cap, base * 2**n)."""
    delay = min(cap, base * (2**n))
    return delay / 2 + rand() * delay / 2


def is_out_of_capacity(status: int, message: str) -> bool:
    return status == 500 and "capacity" in (message or "").lower()


class _OutOfCapacity(Exception):
    pass


class _Aborted(Exception):
    pass


@dataclass
class _Outcome:
    node: Node
    status: NodeStatus | None = None
    instance_id: str = ""
    state: str = ""
    error: Exception | None = None


def _service_error(exc: Any, what: str) -> NomadicError:
    """A ServiceError turned into one line naming what was asked and what OCI said."""
    status, code, message = getattr(exc, "status", 0), getattr(exc, "code", ""), getattr(exc, "message", str(exc))
    if status in (401,):
        return CloudError(
            f"{what}: OCI refused the credentials (401 {code})",
            hint="check user, fingerprint and key_file of the profile, and the region",
        )
    if status in (403, 404):
        return CloudError(f"{what}: not found or not authorized ({status} {code})", hint="check the OCID and your IAM policies")
    return CloudError(f"{what}: {status} {code}: {message}")


class OciProvider:
    """One cluster's instances in one compartment and subnet; SDK clients are made per thread."""

    def __init__(
        self,
        settings: Settings,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`sleep` replaces the backoff waits (tests); by default they are waits that Ctrl-C or an abort cut short."""
        self.settings = settings
        self._sleep = sleep
        self._abort = threading.Event()
        self._rand = rand
        self._session: ociclient.Session | None = None
        self._ads: list[str] = []
        self._ssh_key: str | None = None
        self._assign_public_ip = True
        self._hostname_labels = True
        self._found: list[NodeStatus] | None = None
        self.notes: list[str] = []  # remarks for the user (printed by the caller)

    # ---- plumbing ---------------------------------------------------------------------------------------------
    @property
    def session(self) -> ociclient.Session:
        if self._session is None:
            self._session = ociclient.session(self.settings)
        return self._session

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import oci

        try:
            return fn(*args, **kwargs)
        except oci.exceptions.ServiceError as exc:
            raise _service_error(exc, what) from None
        except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout) as exc:
            raise self._unreachable(what, exc) from None

    def _unreachable(self, what: str, exc: Exception) -> CloudError:
        where = self.settings.oci.endpoint or f"region {self.session.config.get('region')}"
        return CloudError(f"{what}: cannot reach the OCI API at {where} ({type(exc).__name__})", hint="check the network, oci.region or oci.endpoint")

    def _all(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        import oci

        return self._call(what, lambda: oci.pagination.list_call_get_all_results(fn, *args, **kwargs).data)

    def _require(self, key: str) -> str:
        value = getattr(self.settings.oci, key)
        if not value:
            raise ConfigError(
                f"setting oci.{key} is empty",
                hint=f"set it in invoke.yaml or INVOKE_OCI_{key.upper()} (an OCID from the OCI console)",
            )
        return value

    # ---- preflight --------------------------------------------------------------------------------------------
    def preflight(self, image: str | None) -> str:
        o = self.settings.oci
        compartment = self._require("compartment_id")
        subnet_id = self._require("subnet_id")
        image_id = image or (artifacts.lookup(self.settings, Target.OCI) or {}).get("image_id")
        if not image_id:
            raise ConfigError(
                f"no OCI image recorded for '{self.settings.build.image}' in build/artifacts.json and none given",
                hint="run 'invoke build-image' or pass --image-id ocid1.image...",
            )
        if not OCID_RE.match(image_id) or not image_id.startswith("ocid1.image."):
            raise ConfigError(f"image {image_id!r} is not an image OCID", hint="pass --image-id ocid1.image.oc1.<region>.<id>")
        self._ssh_key = keys.ssh_public_key(self.settings)
        session = self.session
        net = ociclient.network(session)
        subnet = self._call(f"subnet {subnet_id}", net.get_subnet, subnet_id).data
        if subnet.cidr_block != self.settings.cluster.cidr:
            raise ConfigError(
                f"setting cluster.cidr = {self.settings.cluster.cidr} differs from subnet {subnet_id}'s CIDR {subnet.cidr_block}",
                hint=f"set cluster.cidr to {subnet.cidr_block}",
            )
        self._assign_public_ip = not subnet.prohibit_public_ip_on_vnic
        self._hostname_labels = bool(subnet.dns_label)
        if not self._hostname_labels:
            self.notes.append(f"subnet {subnet_id} has no DNS label: instances get no hostname_label")
        compute = ociclient.compute(session)
        img = self._call(f"image {image_id}", compute.get_image, image_id).data
        if img.lifecycle_state != "AVAILABLE":
            raise ConfigError(f"image {image_id} is {img.lifecycle_state}, not AVAILABLE", hint="wait for it or rebuild it")
        entries = self._all(f"image {image_id} shapes", compute.list_image_shape_compatibility_entries, image_id)
        shapes = sorted({e.shape for e in entries})
        if o.shape not in shapes:
            raise ConfigError(
                f"image {image_id} is not compatible with shape {o.shape} (compatible: {', '.join(shapes) or 'none'})",
                hint="set oci.shape to one of them or build the image for this shape",
            )
        ident = ociclient.identity(session)
        ads = [a.name for a in self._call("availability domains", ident.list_availability_domains, session.tenancy_id).data]
        wanted = list(o.availability_domains) or ads
        unknown = [a for a in wanted if a not in ads]
        if unknown:
            raise ConfigError(
                f"setting oci.availability_domains names unknown ADs: {', '.join(unknown)}",
                hint=f"this region has: {', '.join(ads)}",
            )
        if subnet.availability_domain:  # an AD-specific subnet pins every node there
            wanted = [subnet.availability_domain]
        self._ads = wanted
        self._call(f"compartment {compartment} instances", compute.list_instances, compartment, limit=1)
        return image_id

    # ---- find ---------------------------------------------------------------------------------------------------
    def find(self) -> list[NodeStatus]:
        compartment = self._require("compartment_id")
        session = self.session
        compute = ociclient.compute(session)
        net = ociclient.network(session)
        name = self.settings.cluster.name
        instances = [
            i
            for i in self._all("list instances", compute.list_instances, compartment)
            if (i.freeform_tags or {}).get(TAG_CLUSTER) == name and i.lifecycle_state != "TERMINATED"
        ]
        vnics: dict[str, str] = {}
        if instances:
            for att in self._all("list VNIC attachments", compute.list_vnic_attachments, compartment):
                if att.lifecycle_state in ("ATTACHING", "ATTACHED") and att.instance_id not in vnics:
                    vnics[att.instance_id] = att.vnic_id
        found = []
        for inst in sorted(instances, key=lambda i: ((i.freeform_tags or {}).get(TAG_NODE, ""), i.time_created)):
            found.append(self._status(inst, net, vnics.get(inst.id)))
        self._found = found
        return found

    def _status(self, inst: Any, net: Any, vnic_id: str | None) -> NodeStatus:
        tags = inst.freeform_tags or {}
        private_ip, public_ip = tags.get(TAG_ADDRESS, ""), ""
        if vnic_id:
            vnic = self._call(f"VNIC of {inst.display_name}", net.get_vnic, vnic_id).data
            private_ip, public_ip = vnic.private_ip or private_ip, vnic.public_ip or ""
        try:
            role = Role(tags.get(TAG_ROLE, ""))
        except ValueError:
            role = Role.CLIENT
        return NodeStatus(
            name=tags.get(TAG_NODE, inst.display_name),
            role=role,
            state=inst.lifecycle_state,
            id=inst.id,
            private_ip=private_ip,
            public_ip=public_ip,
            ssh_host=public_ip or private_ip,
            ssh_port=22,
            ssh_user=self.settings.oci.ssh_user,
        )

    def used_addresses(self) -> set[str]:
        subnet_id = self._require("subnet_id")
        net = ociclient.network(self.session)
        found = self._found if self._found is not None else self.find()
        ours = {n.private_ip for n in found if n.state not in GONE_STATES}
        taken = {p.ip_address for p in self._all("list private IPs", net.list_private_ips, subnet_id=subnet_id)}
        return taken - ours

    # ---- free-tier guard ------------------------------------------------------------------------------------------
    def _compartments(self) -> list[str]:
        session = self.session
        ident = ociclient.identity(session)
        try:
            subtree = self._all(
                "list compartments",
                ident.list_compartments,
                session.tenancy_id,
                compartment_id_in_subtree=True,
                access_level="ACCESSIBLE",
                lifecycle_state="ACTIVE",
            )
        except CloudError:
            self.notes.append("cannot list the tenancy's compartments: the Always Free check counts only oci.compartment_id")
            return [self.settings.oci.compartment_id]
        ids = [session.tenancy_id] + [c.id for c in subtree]
        if self.settings.oci.compartment_id not in ids:
            ids.append(self.settings.oci.compartment_id)
        return ids

    def guard_free_tier(self, nodes: list[Node]) -> None:
        """Refuse a launch that would leave the Always Free tier, counting what the tenancy already runs."""
        o = self.settings.oci
        if o.allow_paid or not nodes:
            return
        if o.shape not in (FREE_TIER_SHAPE, A1_SHAPE):
            raise LimitExceeded(
                f"shape {o.shape} is not in the Always Free tier",
                hint=f"use {FREE_TIER_SHAPE} or pass --allow-paid",
            )
        session = self.session
        compute = ociclient.compute(session)
        blocks = ociclient.blockstorage(session)
        live: list[Any] = []
        storage_gb = 0
        for comp in self._compartments():
            live += [i for i in self._all("list instances", compute.list_instances, comp) if i.lifecycle_state not in GONE_STATES]
            for bv in self._all("list boot volumes", blocks.list_boot_volumes, compartment_id=comp):
                if bv.lifecycle_state not in ("TERMINATING", "TERMINATED"):
                    storage_gb += int(bv.size_in_gbs or 0)
            for vol in self._all("list block volumes", blocks.list_volumes, compartment_id=comp):
                if vol.lifecycle_state not in ("TERMINATING", "TERMINATED"):
                    storage_gb += int(vol.size_in_gbs or 0)
        new = len(nodes)
        if o.shape == FREE_TIER_SHAPE:
            micro = [i for i in live if i.shape == FREE_TIER_SHAPE]
            if len(micro) + new > FREE_MICRO_INSTANCES:
                names = ", ".join(sorted(i.display_name for i in micro)) or "none"
                raise LimitExceeded(
                    f"Always Free allows {FREE_MICRO_INSTANCES} {FREE_TIER_SHAPE} per tenancy: "
                    f"{len(micro)} exist ({names}) and this launch adds {new}",
                    hint="lower --count, destroy unused instances, or pass --allow-paid",
                )
        else:
            a1 = [i for i in live if i.shape == A1_SHAPE]
            ocpus = sum(float(getattr(i.shape_config, "ocpus", 0) or 0) for i in a1) + new * o.ocpus
            memory = sum(float(getattr(i.shape_config, "memory_in_gbs", 0) or 0) for i in a1) + new * o.memory_gb
            if ocpus > FREE_A1_OCPUS or memory > FREE_A1_MEMORY_GB:
                raise LimitExceeded(
                    f"Always Free allows {FREE_A1_OCPUS:g} OCPUs and {FREE_A1_MEMORY_GB:g} GB of {A1_SHAPE} in total: "
                    f"this launch would make {ocpus:g} OCPUs and {memory:g} GB",
                    hint="lower --count, oci.ocpus or oci.memory_gb, or pass --allow-paid",
                )
        added = new * o.boot_volume_gb
        if storage_gb + added > FREE_STORAGE_GB:
            raise LimitExceeded(
                f"Always Free allows {FREE_STORAGE_GB} GB of block and boot volumes in total: "
                f"{storage_gb} GB exist and this launch adds {added} GB ({new} x oci.boot_volume_gb = {o.boot_volume_gb})",
                hint="lower --count or oci.boot_volume_gb, delete unused volumes, or pass --allow-paid",
            )

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._abort.wait(seconds):
            raise _Aborted()

    # ---- launch ---------------------------------------------------------------------------------------------------
    def metadata(self, user_data: str) -> dict[str, str]:
        if self._ssh_key is None:  # launch() without preflight() (tests drive it directly)
            self._ssh_key = keys.ssh_public_key(self.settings)
        return nodeconfig.oci_metadata(user_data, self._ssh_key)

    def _details(self, node: Node, metadata: dict[str, str], image: str, ad: str, fd: str | None) -> Any:
        import oci

        o = self.settings.oci
        m = oci.core.models
        shape_config = None
        if is_flex(o.shape):
            shape_config = m.LaunchInstanceShapeConfigDetails(ocpus=o.ocpus, memory_in_gbs=o.memory_gb)
        return m.LaunchInstanceDetails(
            compartment_id=o.compartment_id,
            availability_domain=ad,
            fault_domain=fd,
            display_name=node.name,
            shape=o.shape,
            shape_config=shape_config,
            metadata=metadata,
            freeform_tags={
                TAG_CLUSTER: self.settings.cluster.name,
                TAG_NODE: node.name,
                TAG_ROLE: node.role.value,
                TAG_ADDRESS: node.address,
            },
            source_details=m.InstanceSourceViaImageDetails(image_id=image, boot_volume_size_in_gbs=o.boot_volume_gb),
            create_vnic_details=m.CreateVnicDetails(
                subnet_id=o.subnet_id,
                private_ip=node.address,
                hostname_label=node.hostname if self._hostname_labels else None,
                assign_public_ip=self._assign_public_ip,
                display_name=node.name,
            ),
        )

    def launch(
        self, plan: Plan, nodes: list[Node], user_data: Mapping[str, str], image: str | None, progress: Progress
    ) -> list[NodeStatus]:
        if not nodes:
            return []
        if not self._ads:
            image = self.preflight(image)
        assert image is not None
        metadata = {n.name: self.metadata(user_data[n.name]) for n in nodes}
        for name, md in metadata.items():
            nodeconfig.check_metadata_size(md, node=name)
        self.guard_free_tier(nodes)
        self._abort = abort = threading.Event()
        outcomes = {n.name: _Outcome(n) for n in nodes}

        def work(node: Node) -> None:
            out = outcomes[node.name]
            try:
                out.status = self._launch_one(node, metadata[node.name], image, progress, out)
            except _Aborted:
                out.error = None
            except Exception as exc:  # recorded per node, reported below
                out.error = exc
                if not isinstance(exc, CapacityError):
                    abort.set()  # limits, refusals, bugs: stop launching (and waiting for) the others

        pool = ThreadPoolExecutor(max_workers=min(32, len(nodes)), thread_name_prefix="launch")
        try:
            for future in [pool.submit(work, n) for n in nodes]:
                future.result()
        except KeyboardInterrupt:
            abort.set()  # workers stop at their next poll or backoff
            pool.shutdown(wait=True, cancel_futures=True)
            self._report(outcomes, progress)
            raise Interrupted(
                "launch interrupted by Ctrl-C; the instances listed above exist",
                hint="rerun 'invoke launch' to converge, or 'invoke destroy' to remove them",
            ) from None
        finally:
            pool.shutdown(wait=True)
        failed = [o for o in outcomes.values() if o.status is None]
        if not failed:
            return [outcomes[n.name].status for n in nodes]  # type: ignore[misc]
        self._report(outcomes, progress)
        errors = [o.error for o in outcomes.values() if o.error is not None]
        if not errors:
            raise CloudError(f"launch stopped with {len(failed)} of {len(nodes)} nodes not running")
        first = next((e for e in errors if isinstance(e, LimitExceeded)), None) or next(
            (e for e in errors if not isinstance(e, CapacityError)), None
        ) or errors[0]
        done = len(nodes) - len(failed)
        summary = f"{done} of {len(nodes)} new nodes running; rerun 'invoke launch' to add the missing ones"
        if isinstance(first, NomadicError):
            raise type(first)(f"{first.message}; {summary}", hint=first.hint)
        raise CloudError(f"{type(first).__name__}: {first}; {summary}")

    @staticmethod
    def _report(outcomes: Mapping[str, _Outcome], progress: Progress) -> None:
        """One line per node: what exists now (so a user knows what a rerun or destroy will meet)."""
        for o in outcomes.values():
            if o.status is not None:
                progress(o.node.name, f"exists: {o.status.state} {o.status.id}")
            elif o.instance_id:
                progress(o.node.name, f"exists: {o.state or 'state unknown'} {o.instance_id} (not yet RUNNING)")
            elif o.error is not None:
                progress(o.node.name, f"not created: {o.error}")
            else:
                progress(o.node.name, "not created: stopped after another node's error")

    def _launch_one(
        self, node: Node, metadata: dict[str, str], image: str, progress: Progress, out: _Outcome
    ) -> NodeStatus:
        o = self.settings.oci
        session = self.session
        launcher = ociclient.compute(session, retry=False)
        placements = [(ad, fd) for ad in self._ads for fd in (o.fault_domains or (None,))]
        attempt = 0
        rounds = max(1, o.capacity_rounds)
        for rnd in range(rounds):
            for ad, fd in placements:
                where = ad + (f"/{fd}" if fd else "")
                for _replay in range(REPLAY_LIMIT):
                    if self._abort.is_set():
                        raise _Aborted()
                    details = self._details(node, metadata, image, ad, fd)
                    try:
                        token = retry_token(self.settings.cluster.name, node.name, attempt)
                        inst = self._launch_call(launcher, details, token, node, progress)
                    except _OutOfCapacity:
                        attempt += 1
                        progress(node.name, f"out of host capacity in {where}")
                        break
                    attempt += 1
                    if inst.lifecycle_state in GONE_STATES:
                        continue  # the token replayed an instance terminated earlier: send a fresh one
                    out.instance_id, out.state = inst.id, inst.lifecycle_state
                    progress(node.name, f"launched {inst.id} in {where} at {node.address}: {inst.lifecycle_state}")
                    return self._wait_running(inst, node.name, progress, out)
                else:
                    raise CloudError(f"{node.name}: retry tokens kept replaying terminated instances")
            if rnd + 1 < rounds:
                delay = backoff(rnd, o.backoff_base_s, o.backoff_max_s, self._rand)
                progress(node.name, f"no host capacity in {', '.join(self._ads)} (round {rnd + 1}/{rounds}); retrying in {delay:.0f}s")
                self._pause(delay)
        raise CapacityError(
            f"{node.name}: out of host capacity for {o.shape} in {', '.join(self._ads)} after {rounds} rounds",
            hint="try later, another region, or raise oci.capacity_rounds",
        )

    def _launch_call(self, launcher: Any, details: Any, token: str, node: Node, progress: Progress) -> Any:
        import oci

        throttled = transport = 0
        while True:
            try:
                return launcher.launch_instance(
                    details, opc_retry_token=token, retry_strategy=oci.retry.NoneRetryStrategy()
                ).data
            except oci.exceptions.ServiceError as exc:
                if exc.status == 429 and throttled < THROTTLE_RETRIES:
                    delay = backoff(throttled, self.settings.oci.backoff_base_s, self.settings.oci.backoff_max_s, self._rand)
                    throttled += 1
                    progress(node.name, f"throttled (429); retrying in {delay:.1f}s")
                    self._pause(delay)
                    continue
                if is_out_of_capacity(exc.status, exc.message):
                    raise _OutOfCapacity() from None
                if exc.status == 429:
                    raise CloudError(f"{node.name}: still throttled (429) after {THROTTLE_RETRIES} retries", hint="try again in a few minutes") from None
                if "LimitExceeded" in (exc.code or "") or "QuotaExceeded" in (exc.code or ""):
                    extra = f" (Always Free allows {FREE_MICRO_INSTANCES} {FREE_TIER_SHAPE})" if details.shape == FREE_TIER_SHAPE else ""
                    raise LimitExceeded(
                        f"{node.name}: OCI service limit reached{extra}: {exc.message}",
                        hint="destroy unused instances or request a limit increase in the console",
                    ) from None
                raise CloudError(f"{node.name}: launch refused: {exc.status} {exc.code}: {exc.message}") from None
            except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout) as exc:
                if transport >= TRANSPORT_RETRIES:
                    raise self._unreachable(f"{node.name}: launch", exc) from None
                transport += 1
                delay = backoff(transport, self.settings.oci.backoff_base_s, self.settings.oci.backoff_max_s, self._rand)
                progress(node.name, f"connection lost ({type(exc).__name__}); resending with the same retry token in {delay:.1f}s")
                self._pause(delay)

    def _wait_running(
        self, inst: Any, name: str, progress: Progress, out: _Outcome | None = None, done: tuple[str, ...] = WAIT_DONE
    ) -> NodeStatus:
        """Wait (SDK waiter) until `inst` reaches one of `done`; RUNNING gives its status with IPs, else an error."""
        import oci

        o = self.settings.oci
        compute = ociclient.compute(self.session)
        last = [inst.lifecycle_state]
        out = out or _Outcome(Node(0, name, Role.CLIENT, ""))

        def seen(_times: int, response: Any) -> None:
            if self._abort.is_set():
                raise _Aborted()
            state = response.data.lifecycle_state
            out.state = state
            if state != last[0]:
                last[0] = state
                progress(name, state)

        try:
            first = self._call(f"{name}: get instance", compute.get_instance, inst.id)
            final = oci.wait_until(
                compute,
                first,
                evaluate_response=lambda r: r.data.lifecycle_state in done,
                max_interval_seconds=max(1.0, o.poll_interval_s),
                max_wait_seconds=o.launch_timeout_s,
                wait_callback=seen,
            ).data
        except oci.exceptions.MaximumWaitTimeExceeded:
            raise CloudError(
                f"{name}: not RUNNING after {o.launch_timeout_s:.0f}s (last state {last[0]}); it exists as {inst.id}",
                hint="rerun 'invoke launch' to wait again, or raise oci.launch_timeout_s",
            ) from None
        except oci.exceptions.ServiceError as exc:
            raise _service_error(exc, f"{name}: waiting for {inst.id}") from None
        out.state = final.lifecycle_state
        if final.lifecycle_state != "RUNNING":
            raise CloudError(f"{name}: instance {inst.id} became {final.lifecycle_state} instead of RUNNING")
        if last[0] != "RUNNING":
            progress(name, "RUNNING")
        vnic_id = None
        atts = self._all(
            f"{name}: VNIC attachments", compute.list_vnic_attachments, o.compartment_id, instance_id=inst.id
        )
        for att in atts:
            if att.lifecycle_state in ("ATTACHING", "ATTACHED"):
                vnic_id = att.vnic_id
                break
        return self._status(final, ociclient.network(self.session), vnic_id)

    # ---- start ----------------------------------------------------------------------------------------------------
    def start(self, nodes: list[NodeStatus], progress: Progress) -> list[NodeStatus]:
        """START each stopped instance of this cluster (tag re-checked first) and wait until it runs."""
        if not nodes:
            return []
        self._abort = threading.Event()
        results: dict[str, NodeStatus] = {}
        errors: list[NomadicError] = []

        def work(node: NodeStatus) -> None:
            try:
                results[node.id] = self._start_one(node, progress)
            except NomadicError as exc:
                errors.append(exc)
                progress(node.name, f"not started: {exc.message}")

        with ThreadPoolExecutor(max_workers=min(32, len(nodes)), thread_name_prefix="start") as pool:
            list(pool.map(work, nodes))
        if errors:
            first = errors[0]
            done = len(results)
            raise type(first)(
                f"{first.message}; {done} of {len(nodes)} stopped nodes started",
                hint=first.hint or "rerun 'invoke launch' to try again",
            )
        return [results[n.id] for n in nodes]

    def _start_one(self, node: NodeStatus, progress: Progress) -> NodeStatus:
        import oci

        compute = ociclient.compute(self.session, retry=False)
        name = self.settings.cluster.name
        inst = self._call(f"{node.name}: get instance {node.id}", compute.get_instance, node.id).data
        if (inst.freeform_tags or {}).get(TAG_CLUSTER) != name:  # never touch what is not ours
            raise CloudError(f"{node.name}: {node.id} is not tagged {TAG_CLUSTER}={name}; left alone")
        if inst.lifecycle_state == "STOPPED":
            throttled = 0

            def action() -> Any:
                try:
                    return compute.instance_action(node.id, "START", retry_strategy=oci.retry.NoneRetryStrategy())
                except oci.exceptions.ServiceError as exc:
                    if exc.status == 429 and throttled < THROTTLE_RETRIES:
                        return None
                    raise

            while (response := self._call(f"{node.name}: start {node.id}", action)) is None:
                delay = backoff(throttled, self.settings.oci.backoff_base_s, self.settings.oci.backoff_max_s, self._rand)
                throttled += 1
                progress(node.name, f"throttled (429); retrying in {delay:.1f}s")
                self._pause(delay)
            inst = response.data
            progress(node.name, f"START sent to {node.id}: {inst.lifecycle_state}")
        return self._wait_running(inst, node.name, progress, done=START_DONE)

    # ---- destroy --------------------------------------------------------------------------------------------------
    def destroy(self, nodes: list[NodeStatus], progress: Progress) -> None:
        import oci

        name = self.settings.cluster.name
        errors: list[str] = []

        def work(node: NodeStatus) -> None:
            compute = ociclient.compute(self.session)
            try:
                inst = compute.get_instance(node.id).data
                if (inst.freeform_tags or {}).get(TAG_CLUSTER) != name:  # never touch what is not ours
                    errors.append(f"{node.name}: {node.id} is not tagged {TAG_CLUSTER}={name}; left alone")
                    return
                if inst.lifecycle_state != "TERMINATED":
                    compute.terminate_instance(node.id, preserve_boot_volume=False)
                    progress(node.name, f"terminating {node.id}")
                oci.wait_until(
                    compute,
                    compute.get_instance(node.id),
                    "lifecycle_state",
                    "TERMINATED",
                    succeed_on_not_found=True,
                    max_interval_seconds=max(1.0, self.settings.oci.poll_interval_s),
                    max_wait_seconds=self.settings.oci.launch_timeout_s,
                )
                progress(node.name, "TERMINATED")
            except oci.exceptions.ServiceError as exc:
                if exc.status == 404:
                    progress(node.name, "already gone")
                    return
                errors.append(str(_service_error(exc, f"{node.name}: terminate {node.id}")))
            except oci.exceptions.MaximumWaitTimeExceeded:
                errors.append(f"{node.name}: not TERMINATED after {self.settings.oci.launch_timeout_s:.0f}s")
            except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout) as exc:
                errors.append(str(self._unreachable(f"{node.name}: terminate", exc)))

        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=min(32, len(nodes)), thread_name_prefix="destroy") as pool:
            list(pool.map(work, nodes))
        if errors:
            raise CloudError("; ".join(errors), hint="rerun 'invoke destroy' to retry")
