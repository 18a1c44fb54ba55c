"""Stage 2-3, load and validate: a directory of YAML specs -> a validated ``SpecSet``.

Takes: a directory (a snapshot of the specs repo, a work tree or a test folder).
Returns: ``validate.SpecSet`` (every spec typed, cross-references checked) or
raises ``SpecError`` carrying every issue with its file, line, column and field.

- ``loader``: hardened YAML -> ``Document`` values with the position of every field.
- ``schema``: the pydantic model of every kind.
- ``repoconfig``: the model of ``llmops.yaml`` (environments, actuators, safety).
- ``validate``: documents -> typed specs -> cross-references -> ``SpecSet``.

Called by the source stage's users (``llmops validate``, ``plan``, ``render``,
the reconciler, write-back's pre-commit check). Imports only ``types`` and ``errors``.
"""
