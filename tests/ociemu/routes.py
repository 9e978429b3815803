"""The emulator's routing table: (HTTP method, path pattern, operation name) and a handler per operation.

server.py dispatches every request through ROUTES; a module that emulates another service (network security
groups here, Object Storage elsewhere) adds its operations with `@route(...)` and is imported by server.py.
A handler is called as handler(emu, query=..., body=..., token=..., **path_groups) with the emulator's lock held
and returns (status, payload, headers). Operation names are the SDK's method names (get_instance); faults may
name them that way or as the API reference does (GetInstance).
"""

from __future__ import annotations

import re
from typing import Any, Callable

Handler = Callable[..., tuple[int, Any, dict[str, str]]]

ROUTES: list[tuple[str, re.Pattern[str], str]] = []
HANDLERS: dict[str, Handler] = {}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def add(method: str, path: str, name: str, handler: Handler | None = None) -> None:
    """One operation: `path` is a regex without anchors, e.g. r"/20160918/vcns/(?P<id>[^/]+)"."""
    ROUTES.append((method, re.compile(f"^{path}$"), name))
    if handler is not None:
        HANDLERS[name] = handler


def route(method: str, path: str, name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        add(method, path, name, handler)
        return handler

    return register


def operation_name(name: str) -> str:
    """GetInstance -> get_instance; get_instance stays."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
