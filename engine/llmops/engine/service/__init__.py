"""Use cases and the composition root: what the interfaces (CLI, REST API) call.

Takes: ``Settings`` (once, at composition) and plain-Python requests (promote
this model, roll this endpoint back, ...) with the caller as a plain
``Caller`` value. Returns: plain dataclasses (``Committed``, ``Uploaded``) or
raises errors of the one hierarchy in ``llmops.engine.errors``, whose
categories the interfaces map to HTTP statuses and exit codes.

- ``writes``: ``WriteService``, the write use cases (rollback, conclude,
  promote, upload), each an audited commit to the specs repo;
- ``admission``: the policy verdicts of a write's edited spec set, before
  its commit (``PolicyDenied``; notes such as a change window's);
- ``access``: ``Caller`` and the tenant rule (``authorize_owner``);
- ``lookup``: a spec by UUID or name (``NotFound`` / ``Conflict``);
- ``compose``: settings -> ``Services`` (store, status cache, write service)
  and a ready ``Reconciler`` (source, actuators).

Called by ``llmops.cli`` and ``llmops.api``; nothing in the engine imports it.
"""
