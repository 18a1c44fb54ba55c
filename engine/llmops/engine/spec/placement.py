"""Rules that decide whether an endpoint or training job can run where it is declared.

Input: a ServingEndpoint or TrainingJob body, the models it names (looked
up by the caller) and its environment's ``repoconfig.Serving``. Output:
``(field path, message)`` pairs, one per problem; the caller
(``llmops.engine.spec.validate``) turns them into located spec issues. Also
holds the few facts the renderers share with these rules (vLLM's accepted
``--max-lora-rank`` values, how a GPU type maps to node labels), so a spec
that validates is one that renders.

Rules:

- the model (and, for an adapter, its base model) lists its files with
  their sha256: the init container verifies every byte against them;
- an adapter's ``loraRank`` fits the server's ``--max-lora-rank``
  (``runtime.maxLoraRank``, or the smallest value vLLM accepts that holds it);
- ``resources.gpu`` fits on one node of its GPU type (tensor parallelism
  runs inside one pod), and the GPU type is one the environment declares
  when it declares any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from llmops.engine.spec import repoconfig, schema
from llmops.engine.types import FieldPath

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's ``--max-lora-rank`` accepts."""

Problem = tuple[FieldPath, str]
ModelLookup = Callable[[schema.ModelRef], schema.ModelSpec | None]


def lora_rank_for(adapter: schema.ModelSpec, runtime: schema.Runtime) -> int:
    """The ``--max-lora-rank`` a vLLM server needs for ``adapter``."""
    if runtime.maxLoraRank is not None:
        return runtime.maxLoraRank
    rank = adapter.spec.loraRank or 16
    return next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])


def node_selector(serving: repoconfig.Serving, gpu_type: str | None) -> dict[str, str]:
    """The node labels of ``gpu_type`` (configured, or ``gpuNodeLabel: <gpuType>``)."""
    if gpu_type is None:
        return {}
    declared = serving.gpuTypes.get(gpu_type)
    if declared is not None:
        return dict(declared.nodeSelector)
    return {serving.gpuNodeLabel: gpu_type}


def gpu_problems(res: schema.Resources, serving: repoconfig.Serving) -> Iterator[Problem]:
    if res.gpuType is None or not serving.gpuTypes:
        return
    declared = serving.gpuTypes.get(res.gpuType)
    if declared is None:
        yield (("spec", "resources", "gpuType"),
               f"GPU type {res.gpuType!r} is not declared for this environment in llmops.yaml "
               f"(serving.gpuTypes: {', '.join(sorted(serving.gpuTypes))})")
    elif res.gpu > declared.gpusPerNode:
        yield (("spec", "resources", "gpu"),
               f"{res.gpu} GPUs do not fit on one {res.gpuType} node ({declared.gpusPerNode} "
               "per node in llmops.yaml); one pod runs on one node")


def _files(model: schema.ModelSpec, path: FieldPath) -> Iterator[Problem]:
    if not model.spec.files:
        yield (path, f"model {model.name} {model.spec.version} lists no files (name, sha256, "
                     "size): its download could not be verified; upload its files first")


def endpoint_problems(body: schema.ServingEndpointBody, models: ModelLookup,
                      serving: repoconfig.Serving) -> Iterator[Problem]:
    yield from gpu_problems(body.resources, serving)
    model = models(body.modelRef)
    if model is None:
        return  # reported as a broken reference
    yield from _files(model, ("spec", "modelRef"))
    base = models(model.spec.baseModel) if model.spec.type == schema.ModelType.ADAPTER \
        and model.spec.baseModel is not None else None
    if base is not None:  # a missing base is reported on the adapter's own baseModel
        yield from _files(base, ("spec", "modelRef"))
        rank = model.spec.loraRank
        if body.runtime.kind == schema.RuntimeKind.VLLM and rank is not None:
            limit = lora_rank_for(model, body.runtime)
            if rank > limit:
                yield (("spec", "runtime", "maxLoraRank"),
                       f"adapter {model.name} has rank {rank}, more than --max-lora-rank "
                       f"{limit}; raise maxLoraRank to at least {rank}")


def training_problems(body: schema.TrainingJobBody, models: ModelLookup,
                      serving: repoconfig.Serving) -> Iterator[Problem]:
    yield from gpu_problems(body.resources, serving)
    base = models(body.baseModelRef)
    if base is not None:
        yield from _files(base, ("spec", "baseModelRef"))
