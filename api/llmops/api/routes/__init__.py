"""The API's routers, one module per area: health, reconcile, audit, catalog, serving,
prompts, training, governance policies and costs.

Each module exposes ``router`` (an ``APIRouter``); ``llmops.api.app`` mounts
them under ``/llm-ops/v1``. Routes are thin: validate parameters, read the
store through a dependency, wrap the result in the envelope. Each route but
the probes declares its permission with ``dependencies=[auth.require(...)]``.
"""
