"""The llmops engine: the pipeline stages (source, load, validate, govern, diff, act,
assess, record) and the reconciler that runs them in order.

Each stage is one module holding plain functions over immutable values; only
``llmops.engine.run.reconciler`` calls more than one stage.
"""
