"""Template machinery of the render stage: sandboxed Jinja2 that emits JSON, parsed back strictly.

Input: a template (a file name under ``templates/`` or a compiled template) and
a context of plain JSON-able values built by ``llmops.renderers.kinds``.
Output: one Kubernetes object as a plain dict. Called by ``kinds`` (and by
tests that exercise the machinery with tiny templates).

The guarantees, each enforced here rather than by template discipline:

- Templates run in ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``:
  a misspelt variable is an error, never an empty string, and a template cannot
  mutate its context or reach Python internals.
- Values are serialised, never pasted: the only way to print a value is the
  ``tojson`` filter (JSON encoding). The environment's ``finalize`` hook
  rejects every ``{{ ... }}`` whose result did not come from ``tojson``, so a
  value holding quotes, newlines or YAML/JSON syntax cannot add or change a
  key, and a template that forgets the filter fails loudly in tests.
- The rendered text is parsed as JSON with duplicate keys rejected, so a
  template bug that repeats a key cannot silently pick one of the values.
- Compiled templates are cached: one environment per process, templates
  loaded once (no mtime checks).

Every failure becomes ``RenderError`` naming the spec file, the spec and the
template.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from llmops.engine.errors import LlmopsError
from llmops.engine.types import KubeObject

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


class RenderError(LlmopsError):
    """A spec could not be rendered; names the spec file, the spec and the template.

    ``str()`` reads like ``endpoints/prod/chat.yaml: ServingEndpoint/chat:
    template deployment.json.j2: 'foo' is undefined``; parts that are not known
    are left out.
    """

    def __init__(self, message: str, *, file: str = "", subject: str = "",
                 template: str = "") -> None:
        self.file = file
        self.subject = subject
        self.template = template
        self.message = message
        parts = [p for p in (file, subject) if p]
        if template:
            parts.append(f"template {template}")
        parts.append(message)
        super().__init__(": ".join(parts))


class Json(str):
    """Text produced by the ``tojson`` filter: the only thing a template may print."""

    __slots__ = ()


def _reject(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serialisable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_reject)


def tojson(value: Any) -> Json:
    """Serialise one value as JSON (the filter templates use for every value)."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return Json(_ENCODER.encode(value))


def _finalize(value: Any) -> Any:
    if isinstance(value, Json):
        return value
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"template printed a {type(value).__name__} without '| tojson'; "
                    "every value must be serialised")


_ENV_LOCK = threading.Lock()
_ENV: jinja2.sandbox.ImmutableSandboxedEnvironment | None = None


def environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """The process-wide template environment (created on first use)."""
    global _ENV
    if _ENV is None:
        with _ENV_LOCK:
            if _ENV is None:
                env = jinja2.sandbox.ImmutableSandboxedEnvironment(
                    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                    undefined=jinja2.StrictUndefined,
                    autoescape=False,
                    auto_reload=False,
                    finalize=_finalize,
                    keep_trailing_newline=False,
                )
                env.filters["tojson"] = tojson
                _ENV = env
    return _ENV


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"rendered output repeats the key {key!r}")
            seen.add(key)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"rendered output contains {name}, which is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def parse_json(text: str) -> Any:
    """Parse rendered JSON; duplicate keys and NaN/Infinity are errors."""
    return _DECODER.decode(text)


def _template_name(template: str | jinja2.Template) -> str:
    if isinstance(template, str):
        return template
    return template.name or "<string>"


def render_object(template: str | jinja2.Template, context: Mapping[str, Any], *,
                  file: str, subject: str) -> KubeObject:
    """Render one template to one Kubernetes object.

    ``template`` is a file name under ``templates/`` or a template compiled by
    ``environment()``; ``file`` and ``subject`` (``Kind/name``) name the spec
    the object is rendered for, for the error message.
    """
    name = _template_name(template)
    try:
        compiled = environment().get_template(template) if isinstance(template, str) else template
        text = compiled.render(context)
        obj = parse_json(text)
    except jinja2.TemplateNotFound as exc:
        raise RenderError("template not found", file=file, subject=subject,
                          template=name) from exc
    except jinja2.UndefinedError as exc:
        raise RenderError(exc.message or "undefined value", file=file, subject=subject,
                          template=name) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"line {exc.lineno}: {exc.message}", file=file, subject=subject,
                          template=name) from exc
    except jinja2.TemplateError as exc:
        raise RenderError(str(exc.message or exc), file=file, subject=subject,
                          template=name) from exc
    except json.JSONDecodeError as exc:
        raise RenderError(f"rendered output is not valid JSON: {exc}", file=file,
                          subject=subject, template=name) from exc
    except (ValueError, TypeError) as exc:
        raise RenderError(str(exc), file=file, subject=subject, template=name) from exc
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise RenderError("rendered output is not a Kubernetes object (apiVersion and kind)",
                          file=file, subject=subject, template=name)
    if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
        raise RenderError("rendered object has no metadata.name", file=file, subject=subject,
                          template=name)
    return obj
