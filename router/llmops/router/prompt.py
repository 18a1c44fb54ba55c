"""A variant's prompt template applied to an OpenAI-style request body.

Input: the parsed JSON body of ``/v1/chat/completions`` or ``/v1/completions``
and the chosen ``Template`` (or None: pass-through). Output: the body to
forward. The request carries the template's values in a top-level
``variables`` object (removed before forwarding). Each ``{{ name }}`` of the
template is replaced by its value, once (a value is never expanded again);
a declared or used variable without a value is a ``PromptError`` (a 400
naming ``variables.<name>``), never an empty string. For chat the filled
template becomes the first message (``system``); for completions it is put
before the prompt (a string or a list of strings). ``stream_options.
include_usage`` is switched on for streaming requests so the router can count
tokens (even when the client set it off: the final usage chunk has no
choices, which OpenAI clients skip). Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

import re
from typing import Any

from llmops.router.table import Template

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
VARIABLES = "variables"
MAX_VALUE_CHARS = 1 << 20


class PromptError(ValueError):
    """The request does not fit the template; ``field`` names the request field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def required(template: Template) -> list[str]:
    """Every variable the template needs: the declared ones and every placeholder used."""
    names = list(template.variables)
    for name in PLACEHOLDER.findall(template.text):
        if name not in names:
            names.append(name)
    return names


def _values(body: dict[str, Any]) -> dict[str, str]:
    raw = body.pop(VARIABLES, None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PromptError("variables must be an object of names to strings", VARIABLES)
    out: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PromptError(
                f"variables.{name} must be a string or a number", f"{VARIABLES}.{name}"
            )
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise PromptError(
                f"variables.{name} is longer than {MAX_VALUE_CHARS} characters",
                f"{VARIABLES}.{name}",
            )
        out[name] = text
    return out


def fill(template: Template, values: dict[str, str]) -> str:
    """The template text with every placeholder replaced by its value."""
    missing = [name for name in required(template) if name not in values]
    if missing:
        listed = ", ".join(f"variables.{name}" for name in missing)
        raise PromptError(
            f"template {template.name} {template.version} needs {listed}; "
            "set them in the request's variables object",
            f"variables.{missing[0]}",
        )
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template.text)


def _chat(body: dict[str, Any], text: str) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise PromptError("messages must be a list of chat messages", "messages")
    body["messages"] = [{"role": "system", "content": text}, *messages]


def _completion(body: dict[str, Any], text: str) -> None:
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        body["prompt"] = text + prompt
    elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        body["prompt"] = [text + p for p in prompt] or [text]
    else:
        raise PromptError(
            "prompt must be a string or a list of strings on an endpoint with a prompt template",
            "prompt",
        )


def apply(body: dict[str, Any], template: Template | None, *, chat: bool) -> dict[str, Any]:
    """The body to forward (``body`` is changed in place and returned)."""
    values = _values(body)
    if template is not None:
        text = fill(template, values)
        (_chat if chat else _completion)(body, text)
    if body.get("stream") is True:
        options = body.get("stream_options")
        if options is None:
            body["stream_options"] = {"include_usage": True}
        elif isinstance(options, dict):
            options["include_usage"] = True
        else:
            raise PromptError("stream_options must be an object", "stream_options")
    return body
