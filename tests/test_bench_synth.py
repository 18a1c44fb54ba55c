"""The benchmarks' synthetic specs repo (``bench/synth.py``) stays a valid repo.

A schema or validation change that the generator does not follow would leave
every benchmark timing a failed pass; this catches it in the fast tier.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import synth

from llmops.engine.plan import govern
from llmops.engine.spec import validate
from llmops.renderers import render_environment


def test_synthetic_repo_is_valid_allowed_and_ends_in_a_one_file_change(tmp_path: Path) -> None:
    repo = synth.generate(tmp_path / "specs", 40, commits=2)

    spec_set = validate.load_and_validate(repo)
    kinds = {item.spec.kind for item in spec_set.items}
    assert {"Model", "PromptTemplate", "PromptExperiment", "TrainingJob", "Dataset", "Policy",
            "ServingEndpoint"} <= kinds
    for env in synth.ENVS:
        assert render_environment(spec_set, env)
        assert not govern.denied(govern.evaluate(spec_set, env)), env
    changed = subprocess.run(["git", "-C", str(repo), "diff", "--name-only", "HEAD~1"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert changed == [str(synth.changed_endpoint(repo).relative_to(repo))]
    log = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
                         capture_output=True, text=True, check=True).stdout
    assert int(log) == 3
