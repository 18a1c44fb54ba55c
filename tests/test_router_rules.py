"""The prompt router's rules without processes: variant choice, templates, tables, usage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llmops.router import choose, prompt, table
from llmops.router.table import RoutingTable, Stickiness, Template, Variant
from llmops.router.usage import UsageScanner, usage_of


def _table(weights: dict[str, int], experiment: str = "exp") -> RoutingTable:
    variants = tuple(Variant(Template(name, "1.0.0", "t", ()), w) for name, w in weights.items())
    return RoutingTable(
        experiment=experiment,
        state="running",
        variants=variants,
        stickiness=Stickiness(header="X-Session-Id"),
    )


def test_a_key_always_gets_the_same_variant_from_a_stable_hash() -> None:
    t = _table({"a": 50, "b": 50})
    # sha256("exp\0user-1") starts with these bytes in every process and on every machine.
    assert choose.point_of("exp", "user-1") == choose.point_of("exp", "user-1")
    assert round(choose.point_of("exp", "user-1"), 6) == round(
        int.from_bytes(__import__("hashlib").sha256(b"exp\x00user-1").digest()[:8], "big") / 2**64,
        6,
    )
    picks = Counter(choose.pick(t, f"user-{i}").name for i in range(2000))  # type: ignore[union-attr]
    assert 900 < picks["a"] < 1100
    assert choose.pick(t, "user-1") == choose.pick(t, "user-1")
    # Another experiment reshuffles the same keys independently.
    other = _table({"a": 50, "b": 50}, experiment="exp-2")
    moved = sum(choose.pick(t, f"u{i}") != choose.pick(other, f"u{i}") for i in range(400))
    assert 120 < moved < 280


def test_zero_weights_are_never_picked_and_no_variants_is_pass_through() -> None:
    t = _table({"a": 0, "b": 100, "c": 0})
    assert {choose.pick(t, None).name for _ in range(200)} == {"b"}  # type: ignore[union-attr]
    assert choose.pick(RoutingTable(None, None, ()), "k") is None


def test_templates_fill_each_placeholder_once_and_name_missing_variables() -> None:
    tpl = Template("greet", "2.0.0", "Hi {{name}}, {{ product }} {{ name }}", ("name",))
    assert prompt.required(tpl) == ["name", "product"]
    body = {
        "messages": [{"role": "user", "content": "q"}],
        "variables": {"name": "{{ product }}", "product": 3},
    }
    out = prompt.apply(body, tpl, chat=True)
    assert out["messages"][0] == {"role": "system", "content": "Hi {{ product }}, 3 {{ product }}"}
    assert "variables" not in out
    with pytest.raises(prompt.PromptError) as missing:
        prompt.apply({"messages": [], "variables": {"name": "x"}}, tpl, chat=True)
    assert missing.value.field == "variables.product"
    assert "greet 2.0.0 needs variables.product" in str(missing.value)
    with pytest.raises(prompt.PromptError, match="variables must be an object"):
        prompt.apply({"messages": [], "variables": ["x"]}, tpl, chat=True)
    with pytest.raises(prompt.PromptError) as token_ids:
        prompt.apply(
            {"prompt": [1, 2], "variables": {"name": "a", "product": "b"}}, tpl, chat=False
        )
    assert token_ids.value.field == "prompt"


def test_streaming_requests_ask_for_usage() -> None:
    out = prompt.apply(
        {"messages": [], "stream": True, "stream_options": {"include_usage": False}},
        None,
        chat=True,
    )
    assert out["stream_options"] == {"include_usage": True}
    assert "stream_options" not in prompt.apply({"messages": []}, None, chat=True)


def test_a_malformed_variant_table_names_the_file_and_field(tmp_path: Path) -> None:
    good = {
        "experiment": "e",
        "state": "running",
        "stickiness": {"header": "X-S"},
        "variants": [
            {"template": "a", "text": "A", "weight": 60, "variables": []},
            {"template": "b", "text": "B", "weight": 40, "variables": []},
        ],
    }
    parsed = table.parse_experiment(json.dumps(good), "exp.json")
    assert [(v.name, v.weight) for v in parsed.variants] == [("a", 60), ("b", 40)]
    assert parsed.stickiness == Stickiness(header="X-S")
    concluded = table.parse_experiment(
        json.dumps({**good, "state": "concluded", "winner": "b"}), "exp.json"
    )
    assert [(v.name, v.weight) for v in concluded.variants] == [("a", 0), ("b", 100)]
    bad = {**good, "variants": [{"template": "a", "text": "A", "weight": 101}]}
    with pytest.raises(table.TableError, match=r"exp.json: variants\[0\].weight: must be"):
        table.parse_experiment(json.dumps(bad), "exp.json")
    with pytest.raises(table.TableError, match="winner: 'c' is not one of the variants"):
        table.parse_experiment(
            json.dumps({**good, "state": "concluded", "winner": "c"}), "exp.json"
        )
    with pytest.raises(table.TableError, match="stickiness"):
        table.parse_experiment(json.dumps({**good, "stickiness": {"header": 1}}), "exp.json")
    # The endpoint's ConfigMap with no template and no table: pass-through.
    folder = tmp_path / "prompt"
    folder.mkdir()
    paths = table.TablePaths(prompt_dir=folder, experiment_file=folder / "experiment.json")
    assert table.load(paths).variants == ()
    # Part of a template is a broken ConfigMap, not none.
    (folder / "template").write_text("Hi", encoding="utf-8")
    with pytest.raises(table.TableError, match="prompt/name: cannot read"):
        table.load(paths)


def test_a_changed_file_reloads_and_a_broken_one_keeps_the_last_table(tmp_path: Path) -> None:
    path = tmp_path / "experiment.json"
    doc = {
        "experiment": "e",
        "state": "running",
        "variants": [
            {"template": "a", "text": "A", "weight": 100},
            {"template": "b", "text": "B", "weight": 0},
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    source = table.TableSource(table.TablePaths(experiment_file=path))
    assert source.refresh() is False
    doc["variants"][0]["weight"], doc["variants"][1]["weight"] = 10, 90  # type: ignore[index]
    path.write_text(json.dumps(doc) + " ", encoding="utf-8")
    assert source.refresh() is True
    assert [v.weight for v in source.current.variants] == [10, 90]
    path.write_text("{", encoding="utf-8")
    assert isinstance(source.refresh(), table.TableError)
    assert [v.weight for v in source.current.variants] == [10, 90]


def test_usage_is_read_from_whole_answers_and_split_stream_events() -> None:
    assert usage_of(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 5}}') == (3, 5)
    assert usage_of(b"not json") is None
    firsts: list[int] = []
    scanner = UsageScanner(lambda: firsts.append(1))
    stream = (
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
        b'data: {"choices": [{"delta": {"content": "b"}}]}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\n\n'
        b"data: [DONE]\n\n"
    )
    for i in range(0, len(stream), 7):
        scanner.feed(stream[i : i + 7])
    assert firsts == [1]
    assert scanner.usage == (7, 2)
