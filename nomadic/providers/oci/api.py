"""The one seam for OCI SDK calls: per-thread clients, bounded retries, SDK errors mapped to user errors, fan-out.

Every request of the OCI provider goes through `Api.call` (or `Api.list`). It retries, with exponential backoff
and jitter, what OCI documents as "try again": 429 TooManyRequests and transient 5xx, and lost connections. A
create is resent with the same opc-retry-token (the caller's kwargs are resent unchanged), so a retry can never
make a twin. "Out of host capacity" (a 500) is never retried here: placement has its own path for it (other ADs
and fault domains, then rounds). The SDK's own retry strategy and circuit breaker are off for every client, so
that an unreachable endpoint is reported after TRANSPORT_RETRIES short tries, not after minutes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from ... import ociclient
from ...config import Settings
from ...errors import CloudError, Interrupted, LimitExceeded, NomadicError

THROTTLE_RETRIES = 8  # 429s / transient 5xx in a row for one request before giving up
TRANSPORT_RETRIES = 2  # lost or refused connections for one request (then the API is reported unreachable)
TRANSIENT_5XX = (500, 502, 503, 504)

T = TypeVar("T")
R = TypeVar("R")


def backoff(n: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with equal jitter: between half and all of min(cap, base * 2**n)."""
    delay = min(cap, base * (2**n))
    return delay / 2 + rand() * delay / 2


def is_out_of_capacity(status: int, message: str) -> bool:
    return status == 500 and "capacity" in (message or "").lower()


class Aborted(Exception):
    """Another worker failed or the user pressed Ctrl-C: stop at the next wait."""


class OutOfCapacity(Exception):
    """LaunchInstance answered "Out of host capacity" (placement tries elsewhere)."""


class TokenInvalidated(Exception):
    """409 InvalidatedRetryToken: the token's instance was terminated, or the token was used with other details."""


class Refused(CloudError):
    """OCI refused a request for a reason the caller may handle (e.g. 409 while a resource is in use)."""

    def __init__(self, message: str, status: int = 0, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status, self.code = status, code


def user_error(exc: Any, what: str) -> NomadicError:
    """The one mapping of an oci ServiceError to what a user reads: what was asked, what OCI said, what to do."""
    status, code, message = getattr(exc, "status", 0), getattr(exc, "code", "") or "", getattr(exc, "message", str(exc))
    if status == 401:
        return Refused(
            f"{what}: OCI refused the credentials (401 {code})",
            status, code, hint="check user, fingerprint and key_file of the profile, and the region",
        )
    if status in (403, 404):
        return Refused(
            f"{what}: not found or not authorized ({status} {code})", status, code,
            hint="check the OCID and your IAM policies",
        )
    if "LimitExceeded" in code or "QuotaExceeded" in code:
        return LimitExceeded(
            f"{what}: the tenancy's service limit or quota is reached: {message}",
            hint="destroy unused instances or request a limit increase in the console",
        )
    if status == 429:
        return CloudError(f"{what}: still throttled (429) after {THROTTLE_RETRIES} retries", hint="try again in a few minutes")
    if status in TRANSIENT_5XX:
        return CloudError(f"{what}: OCI kept failing ({status} {code}: {message})", hint="try again later")
    return Refused(f"{what}: {status} {code}: {message}", status, code)


@dataclass
class Outcome(Generic[T, R]):
    item: T
    result: R | None = None
    error: Exception | None = None


class Api:
    """SDK clients (one set per thread: they share a requests session) and the calls made with them."""

    def __init__(
        self, settings: Settings, sleep: Callable[[float], None] | None = None, rand: Callable[[], float] | None = None
    ) -> None:
        import random

        self.settings = settings
        self.abort = threading.Event()
        self._sleep = sleep
        self._rand = rand or random.random
        self._session: ociclient.Session | None = None
        self._local = threading.local()

    # ---- clients -----------------------------------------------------------------------------------------------
    @property
    def session(self) -> ociclient.Session:
        if self._session is None:
            self._session = ociclient.session(self.settings)
        return self._session

    def _client(self, kind: str) -> Any:
        client = getattr(self._local, kind, None)
        if client is None:
            client = getattr(ociclient, kind)(self.session, retry=False)
            setattr(self._local, kind, client)
        return client

    @property
    def compute(self) -> Any:
        return self._client("compute")

    @property
    def network(self) -> Any:
        return self._client("network")

    @property
    def identity(self) -> Any:
        return self._client("identity")

    @property
    def blockstorage(self) -> Any:
        return self._client("blockstorage")

    @property
    def objectstorage(self) -> Any:
        return self._client("objectstorage")

    @property
    def workrequests(self) -> Any:
        return self._client("workrequests")

    # ---- waiting -------------------------------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """A backoff or poll wait that an abort (another node's failure, Ctrl-C) cuts short."""
        if self.abort.is_set():
            raise Aborted()
        if self._sleep is not None:
            self._sleep(seconds)
        elif self.abort.wait(seconds):
            raise Aborted()

    def poll_pause(self, seconds: float) -> None:
        """A poll interval: real time always (an injected sleep replaces backoffs only), cut short by an abort."""
        if self.abort.wait(seconds):
            raise Aborted()

    def backoff(self, n: int) -> float:
        o = self.settings.oci
        return backoff(n, o.backoff_base_s, o.backoff_max_s, self._rand)

    # ---- calls ---------------------------------------------------------------------------------------------------
    def unreachable(self, what: str, exc: Exception) -> CloudError:
        where = self.settings.oci.endpoint or f"region {self.session.config.get('region')}"
        return CloudError(
            f"{what}: cannot reach the OCI API at {where} ({type(exc).__name__})",
            hint="check the network, oci.region or oci.endpoint",
        )

    def call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        say: Callable[[str], None] | None = None,
        placement: bool = False,
        **kwargs: Any,
    ) -> Any:
        """fn(*args, **kwargs).data, retried on 429, transient 5xx and lost connections; errors as NomadicErrors.

        `say` reports each retry (launch shows them as per-node progress). With `placement` (LaunchInstance), out
        of host capacity raises OutOfCapacity and InvalidatedRetryToken raises TokenInvalidated, for placement
        to handle; elsewhere they are errors like any other.
        """
        import oci

        throttled = transport = 0
        while True:
            try:
                return fn(*args, **kwargs).data
            except oci.exceptions.ServiceError as exc:
                if is_out_of_capacity(exc.status, exc.message):
                    if placement:
                        raise OutOfCapacity(exc.message) from None
                    raise user_error(exc, what) from None
                if exc.status == 409 and exc.code == "InvalidatedRetryToken" and placement:
                    raise TokenInvalidated(exc.message) from None
                if (exc.status == 429 or exc.status in TRANSIENT_5XX) and throttled < THROTTLE_RETRIES:
                    delay = self.backoff(throttled)
                    throttled += 1
                    if say:
                        say(f"{'throttled' if exc.status == 429 else 'OCI error'} ({exc.status}); retrying in {delay:.1f}s")
                    self.pause(delay)
                    continue
                raise user_error(exc, what) from None
            except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout) as exc:
                if transport >= TRANSPORT_RETRIES:
                    raise self.unreachable(what, exc) from None
                transport += 1
                delay = self.backoff(transport)
                if say:
                    say(f"connection lost ({type(exc).__name__}); resending in {delay:.1f}s")
                self.pause(delay)

    def call_response(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like `call`, but the whole response, for calls whose answer is in headers (etag, work request id)."""
        return self.call(what, _with_response(fn), *args, **kwargs)

    def list(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """Every page of a list call; each page is one `call` (retried on its own)."""
        items: list[Any] = []
        page = None
        while True:
            response = self.call(what, _with_response(fn), *args, page=page, **kwargs)
            items.extend(response.data)
            page = response.headers.get("opc-next-page")
            if not page:
                return items


def _with_response(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make `call` return the whole response (it returns `.data`), for the paging headers."""

    class Wrapped:
        def __init__(self, response: Any) -> None:
            self.data = response

    def wrapped(*args: Any, page: str | None = None, **kwargs: Any) -> Any:
        if page:
            kwargs["page"] = page
        return Wrapped(fn(*args, **kwargs))

    return wrapped


def fan_out(
    api: Api, items: Sequence[T], work: Callable[[T], R], name: str, stop_on: Callable[[Exception], bool] = lambda e: True
) -> list[Outcome[T, R]]:
    """Run work(item) for every item in threads; one Outcome per item, in order.

    An error for which `stop_on` is true sets api.abort, so the other workers stop at their next wait
    (Aborted leaves their outcome empty). Ctrl-C stops them all and raises Interrupted.
    """
    api.abort = threading.Event()
    outcomes: list[Outcome[T, R]] = [Outcome(i) for i in items]
    if not items:
        return outcomes

    def run(out: Outcome[T, R]) -> None:
        try:
            out.result = work(out.item)
        except Aborted:
            pass
        except Exception as exc:  # recorded per item; the caller reports them
            out.error = exc
            if stop_on(exc):
                api.abort.set()

    pool = ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix=name)
    try:
        for future in [pool.submit(run, o) for o in outcomes]:
            future.result()
    except KeyboardInterrupt:
        api.abort.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted(f"{name} interrupted by Ctrl-C") from None
    finally:
        pool.shutdown(wait=True)
    return outcomes
