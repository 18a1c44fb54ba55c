"""The API's routers, one module per area: health, reconcile, governance audit.

Each module exposes ``router`` (an ``APIRouter``); ``llmops.api.app`` mounts
them under ``/llm-ops/v1``. Routes are thin: validate parameters, read the
store through a dependency, wrap the result in the envelope.
"""
