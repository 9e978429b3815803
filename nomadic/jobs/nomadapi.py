"""A small client for Nomad's HTTP API (v1): parse, validate, register, deregister, deployments, allocations."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import CloudError

TIMEOUT_S = 30.0


class NomadError(CloudError):
    """Nomad answered with an error (its own message), or could not be reached."""


class NomadAPI:
    def __init__(self, address: str, timeout: float = TIMEOUT_S) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        url = f"{self.address}/v1/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace").strip().replace("\n", "; ")
            raise NomadError(f"Nomad refused {method} /v1/{path}: {text or exc.reason} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NomadError(f"Nomad at {self.address} did not answer: {reason}") from None
        return json.loads(raw) if raw.strip() else None

    def parse(self, hcl: str) -> dict:
        """The job as Nomad's HCL2 parser reads it (the JSON the other endpoints take)."""
        return self._call("POST", "jobs/parse", {"JobHCL": hcl, "Canonicalize": True})

    def validate(self, job: dict) -> list[str]:
        """Nomad's validation of the job; raises with Nomad's message when invalid, returns its warnings."""
        answer = self._call("POST", "validate/job", {"Job": job}) or {}
        if answer.get("Error"):
            raise NomadError(f"Nomad rejected job {job.get('ID')}: {answer['Error'].strip()}")
        warnings = answer.get("Warnings") or ""
        return [w.strip() for w in warnings.splitlines() if w.strip() and not w.strip().endswith("warning:")]

    def register(self, job: dict) -> dict:
        return self._call("POST", "jobs", {"Job": job})

    def job(self, job_id: str) -> dict | None:
        try:
            return self._call("GET", f"job/{urllib.parse.quote(job_id)}")
        except NomadError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def jobs(self) -> list[dict]:
        return self._call("GET", "jobs") or []

    def deregister(self, job_id: str, purge: bool = False) -> dict:
        return self._call("DELETE", f"job/{urllib.parse.quote(job_id)}", query={"purge": str(purge).lower()})

    def latest_deployment(self, job_id: str) -> dict | None:
        return self._call("GET", f"job/{urllib.parse.quote(job_id)}/deployment")

    def allocations(self, job_id: str) -> list[dict]:
        return self._call("GET", f"job/{urllib.parse.quote(job_id)}/allocations") or []

    def nodes(self) -> list[dict]:
        return self._call("GET", "nodes") or []

    def leader(self) -> str:
        return self._call("GET", "status/leader") or ""
