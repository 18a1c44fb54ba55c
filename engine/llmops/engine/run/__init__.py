"""Running the pipeline: the reconciler and the loop around it.

Takes: a ``Source``, a ``Store`` and an actuator per environment. Returns: one
``PassResult`` per environment per pass, everything recorded in the store.

- ``reconciler``: one linear pass per environment; the only module that calls
  more than one stage. It executes the ``ChangeSet`` that
  ``llmops.engine.plan.decide`` returns.
- ``record``: the record stage: runs, audit entries, inventory and status rows.
- ``daemon``: interval, jitter, wake-ups and clean shutdown around passes.
- ``leader``: one leader among replicas (PostgreSQL advisory lock, Redis or flock).
- ``metrics``: the reconciler's figures as Prometheus metrics.

Called by the composition root in ``llmops.engine.service`` and the CLI.
"""
