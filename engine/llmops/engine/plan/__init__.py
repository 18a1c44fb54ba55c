"""Stages 4-6, govern, diff and plan: rendered objects on two sides -> what would change.

Takes: a ``SpecSet`` and its rendered objects, and what is there now (another
revision's objects for a pull request, or the live/published objects and the
inventory for the reconciler). Returns: a ``ChangeSet`` per environment (one
entry per ``ResourceKey``), policy ``Verdict`` values and, for reviewers, a
``Plan`` with semantic summaries and the GPU cost delta.

- ``changeset``: the types: ``ChangeSet`` of ``ChangeSetEntry`` (past-tense
  actions, skip reasons, drift) with a ``Blocked`` reason and the verdicts.
- ``diff``: normalised, secret-masked comparison of objects -> ``ChangeSet``.
- ``govern``: ``Policy`` rules -> allow/deny verdicts with reasons.
- ``decide``: the one decision both callers make: diff, then the gates (prune
  protection, source unavailable, empty revision, prune threshold, policy).
- ``cost``: GPU allocation and its monthly cost, base against head.
- ``planner``: the pull-request plan (``llmops plan``).

Called by the reconciler and ``llmops plan``. Imports the renderers and the spec stage.
"""
