"""The llmops REST API (``llmops serve``): read-mostly status under ``/llm-ops/v1``.

Role: a FastAPI application over the state store. ``llmops.api.app.create_app``
builds it from a ``Store`` (plus an optional trigger callable and settings);
every response is the envelope of ``llmops.api.envelope``; errors map to HTTP
in ``llmops.api.errors`` only. Caller: ``llmops.cli.serve_cmd`` and tests.
The engine never imports this package (import-linter enforces it).
"""
