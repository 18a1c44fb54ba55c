"""Property tests: whatever bytes or YAML a repo holds, the only error that escapes the
loader and validator is llmops' own SpecError."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.engine.errors import SpecError, SpecIssue
from llmops.engine.spec import loader, validate

YAML_ALPHABET = string.ascii_letters + string.digits + " -:[]{},&*!|>'\"#%@`?\n\t.~/\\"

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                    st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=10), inner, max_size=4),
), max_leaves=20)


def _check_bytes(data: bytes) -> None:
    """Documents of ``fuzz.yaml``, or a ``SpecError`` whose every issue names the file and
    a line and column inside it; nothing else escapes."""
    try:
        documents = loader.load_bytes(data, "fuzz.yaml", cache=None)
    except SpecError as exc:
        _check_issues(exc.issues, data)
    else:
        assert {doc.file for doc in documents} <= {"fuzz.yaml"}


def _check_issues(issues: tuple[SpecIssue, ...], data: bytes) -> None:
    assert issues
    lines = data.count(b"\n") + 2  # libyaml may point just past the last line
    for issue in issues:
        assert issue.file == "fuzz.yaml", issue
        assert 1 <= issue.line <= lines, issue
        assert issue.column >= 1, issue
        assert issue.message, issue


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=YAML_ALPHABET, max_size=200))
def test_random_yaml_like_text(text: str) -> None:
    _check_bytes(text.encode())


def _spec_like(kind: str, spec: object) -> str:
    import json

    return json.dumps({"apiVersion": "llmops.io/v1alpha1", "kind": kind,
                       "metadata": {"name": "x"}, "spec": spec})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["Model", "ServingEndpoint", "PromptExperiment", "TrainingJob",
                             "Policy", "Dataset", "PromptTemplate", "Nope"]), spec=values)
def test_random_specs_through_validation(minimal_repo: Path, kind: str, spec: object) -> None:
    (minimal_repo / "fuzz.yaml").write_text(_spec_like(kind, spec))
    try:
        result = len(validate.load_and_validate(minimal_repo, cache=None).items)
    except SpecError as exc:
        result = -len(exc.issues)
    assert result != 0
