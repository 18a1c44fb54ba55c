"""Use cases and the composition root: what the interfaces (CLI, REST API) call.

Takes: ``Settings`` and plain-Python requests (promote this model, roll this
endpoint back, ...). Returns: plain results (``WriteResult`` and friends) or
raises errors of the one hierarchy in ``llmops.engine.errors``.

- ``compose``: settings -> store, source, actuators and a ready ``Reconciler``.

Called by ``llmops.cli`` and ``llmops.api``; nothing in the engine imports it.
"""
