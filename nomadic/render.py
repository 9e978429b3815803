"""Pure rendering: a template name and a context in, text out (Jinja2, StrictUndefined)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jinja2

from .errors import RenderError

# Templates live beside the code users read: packer/, cloud-init/ and jobs/ at the project root.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = ("packer", "cloud-init", "jobs")


def _hcl(value: Any) -> str:
    """A Python value as an HCL literal (strings, numbers, bools, lists and maps of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        # HCL strings are JSON strings, except that template sequences must be escaped.
        return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_hcl(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


@lru_cache(maxsize=None)
def environment(root: Path = PROJECT_ROOT) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(root / d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hcl"] = _hcl
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env


def render(template: str, context: Mapping[str, Any], root: Path = PROJECT_ROOT) -> str:
    """Render `template` (a path under packer/, cloud-init/ or jobs/) with `context`."""
    env = environment(root)
    try:
        return env.get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{template}: {exc.message}", hint="a setting the template uses was not passed") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{exc.filename or template}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name} not found under {', '.join(TEMPLATE_DIRS)}") from None
