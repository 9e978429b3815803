"""Resumable HTTP(S) downloads checked against a digest: the AlmaLinux qcow2 that import-image uploads.

A partial download stays as `<file>.part`; the next run asks for the rest with an HTTP Range request (a server that
ignores Range answers 200 and the file starts over). Nothing is renamed into place before its digest matches.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable

from .errors import ConfigError, TransferError

TIMEOUT_S = 60.0
CHUNK = 1 << 20
# AlmaLinux's CHECKSUM files use the BSD form ("SHA256 (name) = hex"); sha256sum's form ("hex  name") also works.
_BSD = re.compile(r"^(?P<algo>SHA256|SHA512) \((?P<name>[^)]+)\) = (?P<hex>[0-9a-fA-F]+)$")
_GNU = re.compile(r"^(?P<hex>[0-9a-fA-F]{64}|[0-9a-fA-F]{128}) [ *](?P<name>\S+)$")


def digest_of(path: Path, algo: str = "sha256", progress: Callable[[int], None] | None = None) -> str:
    """'<algo>:<hex>' of the file's content."""
    h = hashlib.new(algo)
    done = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    return f"{algo}:{h.hexdigest()}"


def parse_checksums(text: str, name: str) -> str | None:
    """The digest ('sha256:<hex>') a CHECKSUM file lists for file `name`, or None."""
    for line in text.splitlines():
        line = line.strip()
        m = _BSD.match(line)
        if m and m["name"] == name:
            return f"{m['algo'].lower()}:{m['hex'].lower()}"
        m = _GNU.match(line)
        if m and m["name"].lstrip("*") == name:
            return f"{'sha256' if len(m['hex']) == 64 else 'sha512'}:{m['hex'].lower()}"
    return None


def _open(url: str, headers: dict[str, str] | None = None) -> object:
    request = urllib.request.Request(url, headers={"User-Agent": "nomadic", **(headers or {})})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http(s) URLs from the definition)


def expected_digest(url: str, checksum: str, checksum_url: str, where: str) -> str:
    """The pinned checksum, or the line for the URL's file name in the CHECKSUM file at checksum_url."""
    if checksum:
        return checksum
    name = url.rsplit("/", 1)[-1]
    try:
        with _open(checksum_url) as resp:  # type: ignore[attr-defined]
            text = resp.read(1 << 20).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise TransferError(f"cannot fetch the checksum file {checksum_url} ({_reason(exc)})", hint=f"check {where}") from None
    found = parse_checksums(text, name)
    if not found:
        raise ConfigError(
            f"the checksum file {checksum_url} lists no SHA256 for {name}",
            hint=f"fix the url or checksum_url in {where}, or pin checksum: sha256:<hex>",
        )
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)
    return str(reason or type(exc).__name__)


class Progress:
    """One line per few seconds on stderr: what, how far, how fast."""

    def __init__(
        self, what: str, total: int | None, start: int = 0, stream: IO[str] | None = None, every_s: float = 2.0
    ) -> None:
        self.what, self.total, self.stream, self.every_s = what, total, stream or sys.stderr, every_s
        self.started = self.last = time.monotonic()
        self.start_at = start  # bytes there before this run (a resumed download): not counted in the rate

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        rate = (done - self.start_at) / max(now - self.started, 1e-6) / 1e6
        share = f" ({100 * done // self.total}%)" if self.total else ""
        total = f" of {self.total / 1e6:.1f}" if self.total else ""
        print(f"{self.what}: {done / 1e6:.1f}{total} MB{share}, {rate:.1f} MB/s", file=self.stream, flush=True)


def fetch(url: str, dest: Path, expected: str, where: str) -> Path:
    """Download url to dest (resuming dest.part), verify `expected` ('sha256:<hex>'), then move it into place.

    An existing dest with the right digest is reused. A digest mismatch deletes the partial file and raises.
    """
    algo = expected.split(":", 1)[0]
    if dest.is_file() and digest_of(dest, algo) == expected:
        print(f"using {dest} (already downloaded, {expected[:19]}... matches)", file=sys.stderr)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = _open(url, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part is already complete (or longer than the file): check it below
            resp = None
        else:
            raise TransferError(f"downloading {url} failed (HTTP {exc.code})", hint=f"check the url in {where}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransferError(f"cannot download {url} ({_reason(exc)})", hint="check the network, then rerun: it resumes") from None
    if resp is not None:
        with resp:  # type: ignore[attr-defined]
            status = resp.status  # type: ignore[attr-defined]
            if status == 200 and offset:
                print(f"the server ignored the resume request; downloading {url} from the start", file=sys.stderr)
                offset = 0
            length = resp.headers.get("Content-Length")  # type: ignore[attr-defined]
            total = offset + int(length) if length and length.isdigit() else None
            if offset:
                print(f"resuming {dest.name} at {offset / 1e6:.1f} MB", file=sys.stderr)
            progress = Progress(f"downloading {dest.name}", total, start=offset)
            done = offset
            try:
                with part.open("ab" if offset else "wb") as out:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):  # type: ignore[attr-defined]
                        out.write(chunk)
                        done += len(chunk)
                        progress(done)
            except OSError as exc:
                raise TransferError(
                    f"downloading {url} broke off at {done / 1e6:.1f} MB ({_reason(exc)})",
                    hint="rerun import-image: it resumes where it stopped",
                ) from None
            progress(done, final=True)
    got = digest_of(part, algo)
    if got != expected:
        part.unlink()
        raise TransferError(
            f"checksum mismatch for {url}: expected {expected}, got {got}; the download was deleted and nothing was uploaded",
            hint=f"rerun to download it again; if it persists, the file or the checksum in {where} changed upstream",
        )
    part.replace(dest)
    return dest
