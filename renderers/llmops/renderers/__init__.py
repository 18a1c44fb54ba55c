"""The llmops renderers: validated specs -> the Kubernetes objects of one environment.

``render_environment(spec_set, environment, revision=...)`` is the render
stage of the pipeline (see ``llmops.renderers.render``); ``manifests`` turns
its output into YAML documents and files for ``llmops render`` and the hydrate
actuator. Templates live in ``templates/`` inside the package, so they ship in
the wheel. Callers: the CLI, the planner and the reconciler.
"""

from llmops.renderers.render import RenderCache, RenderError, render_environment

__all__ = ["RenderCache", "RenderError", "render_environment"]
