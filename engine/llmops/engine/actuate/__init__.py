"""Stages 7-8, act and assess: an ``ActPlan`` -> objects applied or published, and their health.

Takes: an ``ActPlan`` for one environment (every desired object, which to
write, which to delete, which to keep). Returns: an ``ActResult`` with one
``ObjectOutcome`` (outcome, message, ``HealthStatus``) per object. ``observe``
returns what is applied now, or raises: unknown is never empty.

- ``base``: the ``Actuator`` protocol, its values and the plan-only actuator.
- ``hydrate``: manifests published to a directory, swapped atomically.
- ``branch``: manifests committed to a branch of the specs repo.
- ``kube``: server-side apply to a cluster; ``kube_health`` reads health.
- ``health``: the ordered ``HealthStatus`` vocabulary.
- ``argocd``: an environment's Argo CD Application, read for sync and health.

Called only by the reconciler (and ``argocd`` by the status readers). Never
imports the renderers: objects arrive as plain data.
"""
