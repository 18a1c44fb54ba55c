"""`llmops router` as a process in front of a real OpenAI-compatible server on loopback.

The upstream is ``fake_openai.py`` (canned answers, streaming, latency and
failures on request); the router is the real CLI reading ConfigMap-shaped
files. What a user of an endpoint would notice: the traffic split, sticky
sessions, a weight change without a restart, streaming chunk by chunk,
tokens counted per variant, timeouts and failures answered 504/502 and
counted, a client that leaves cancelling the model server's work, and clear
400s for a request that does not fit the template.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from router_support import ConfigMapDir, chat, experiment, metric, router, stats, upstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_server() -> Iterator[str]:
    with upstream() as base:
        yield base


@pytest.fixture
def fake(model_server: str) -> str:
    httpx.post(f"{model_server}/_reset", timeout=5)
    return model_server


def _mounted(tmp_path: Path, table: str) -> tuple[ConfigMapDir, Path]:
    folder = ConfigMapDir(tmp_path / "experiment", {"experiment.json": table})
    return folder, folder.root / "experiment.json"


def _within(count: int, n: int, share: float) -> bool:
    """``count`` of ``n`` is within 4.5 standard deviations of a binomial(n, share)."""
    sd = math.sqrt(n * share * (1 - share))
    return abs(count - n * share) <= 4.5 * sd


def test_weights_split_the_traffic_within_statistical_bounds(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 50, "b": 30, "c": 20}))
    n = 600
    with router(fake, "--experiment-file", path) as base, httpx.Client(timeout=10) as client:
        seen: Counter[str] = Counter()
        for _ in range(n):
            answer = client.post(
                f"{base}/v1/chat/completions",
                json={"model": "fake", "messages": [], "variables": {"product": "Acme"}},
            )
            assert answer.status_code == 200
            seen[answer.headers["x-llmops-variant"]] += 1
        assert sum(seen.values()) == n
        for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
            assert _within(seen[name], n, share), seen
            assert (
                metric(
                    base,
                    "llmops_router_requests_total",
                    variant=name,
                    code="200",
                    experiment="greeting-test",
                )
                == seen[name]
            )


def test_a_session_key_keeps_its_variant_in_every_router_process(fake: str, tmp_path: Path) -> None:
    table = experiment({"a": 50, "b": 50}, stickiness={"header": "X-Session-Id"})
    _, path = _mounted(tmp_path, table)
    keys = [f"session-{i}" for i in range(40)]
    with (
        router(fake, "--experiment-file", path) as first,
        router(fake, "--experiment-file", path) as second,
    ):
        chosen = {}
        for key in keys:
            answers = {
                chat(base, headers={"X-Session-Id": key}).headers["x-llmops-variant"]
                for base in (first, first, second)
            }
            assert len(answers) == 1, (key, answers)
            chosen[key] = answers.pop()
    assert set(chosen.values()) == {"a", "b"}


def test_cookie_stickiness_hands_out_a_cookie_and_honours_it(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 50, "b": 50}, stickiness={"cookie": "ab"}))
    with router(fake, "--experiment-file", path) as base:
        first = chat(base)
        issued = first.cookies["ab"]
        assert issued
        again = [chat(base, headers={"cookie": f"ab={issued}"}) for _ in range(5)]
        assert {a.headers["x-llmops-variant"] for a in again} == {first.headers["x-llmops-variant"]}
        assert all("set-cookie" not in a.headers for a in again)


def test_a_weight_change_in_the_mounted_file_applies_without_restart(
    fake: str, tmp_path: Path
) -> None:
    folder, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path) as base:
        pid_before = httpx.get(f"{base}/healthz").json()
        assert {chat(base).headers["x-llmops-variant"] for _ in range(10)} == {"a"}
        with httpx.Client(timeout=10) as slow_client:
            # A request in flight while the table changes keeps its variant and completes.
            request = slow_client.build_request(
                "POST",
                f"{base}/v1/chat/completions",
                json={"model": "fake", "messages": [], "variables": {"product": "x"}},
                headers={"x-fake-latency": "1"},
            )
            in_flight = slow_client.send(request, stream=True)
            folder.update({"experiment.json": experiment({"a": 0, "b": 100})})
            deadline = time.monotonic() + 5
            while chat(base).headers["x-llmops-variant"] != "b":
                assert time.monotonic() < deadline, "the new weights never applied"
                time.sleep(0.05)
            in_flight.read()
            assert in_flight.status_code == 200
            assert in_flight.headers["x-llmops-variant"] == "a"
        assert {chat(base).headers["x-llmops-variant"] for _ in range(10)} == {"b"}
        health = httpx.get(f"{base}/healthz").json()
        assert health["variants"] == {"a": 0, "b": 100}
        assert health["endpoint"] == pid_before["endpoint"]
        assert metric(base, "llmops_router_config_reloads_total", result="ok") == 1
        # A broken file keeps the last good table and is counted.
        folder.update({"experiment.json": "{not json"})
        deadline = time.monotonic() + 5
        while metric(base, "llmops_router_config_reloads_total", result="error") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert chat(base).headers["x-llmops-variant"] == "b"


def _until(base: str, variant: str) -> httpx.Response:
    deadline = time.monotonic() + 5
    while (answer := chat(base)).headers["x-llmops-variant"] != variant:
        assert time.monotonic() < deadline, f"variant {variant} never applied"
        time.sleep(0.05)
    return answer


def test_a_table_that_appears_or_goes_in_the_mounted_folder_applies_without_restart(
    fake: str, tmp_path: Path
) -> None:
    # The endpoint's ConfigMap as the renderer writes it: always mounted, the experiment's
    # table a key that comes and goes.
    template = {"name": "greeting", "version": "1.0.0", "template": "Hi for {{ product }}.",
                "variables": '["product"]'}
    folder = ConfigMapDir(tmp_path / "prompt", template)
    table = folder.root / "experiment.json"
    with router(fake, "--prompt-dir", folder.root, "--experiment-file", table) as base:
        assert chat(base).headers["x-llmops-variant"] == "greeting"
        folder.update({**template, "experiment.json": experiment({"a": 0, "b": 100})})
        assert _until(base, "b").headers["x-llmops-experiment"] == "greeting-test"
        assert httpx.get(f"{base}/healthz").json()["experiment"] == "greeting-test"
        folder.update(template)
        assert "x-llmops-experiment" not in _until(base, "greeting").headers
        folder.update({})  # neither a template nor a table: pass-through
        _until(base, "none")
        assert stats(fake)["requests"][-1]["body"]["messages"] == [
            {"role": "user", "content": "hi there"}]
        assert metric(base, "llmops_router_config_reloads_total", result="ok") == 3
        assert metric(base, "llmops_router_config_reloads_total", result="error") == 0


def test_a_concluded_experiment_sends_everything_to_the_winner(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 80, "b": 20}, state="concluded", winner="b"))
    with router(fake, "--experiment-file", path) as base:
        assert {chat(base).headers["x-llmops-variant"] for _ in range(20)} == {"b"}


def test_the_variant_template_is_applied_and_a_missing_variable_is_a_400(
    fake: str, tmp_path: Path
) -> None:
    texts = {"a": "You are {{ agent }} for {{product}}. {{ product }}!"}
    table = experiment({"a": 100, "b": 0}, texts=texts).replace(
        '"variables": ["product"], "text": "You are {{ agent',
        '"variables": ["product", "agent"], "text": "You are {{ agent',
    )
    _, path = _mounted(tmp_path, table)
    with router(fake, "--experiment-file", path) as base:
        missing = chat(base, variables={"product": "Acme"})
        assert missing.status_code == 400
        error = missing.json()["error"]
        assert error["param"] == "variables.agent"
        assert "variables.agent" in error["message"]
        assert "a 1.0.0" in error["message"]
        assert stats(fake)["requests"] == []
        done = chat(base, variables={"product": "Acme {{ agent }}", "agent": "Ann"})
        assert done.status_code == 200
        sent = stats(fake)["requests"][-1]["body"]
        assert sent["messages"][0] == {
            "role": "system",
            "content": "You are Ann for Acme {{ agent }}. Acme {{ agent }}!",
        }
        assert sent["messages"][1] == {"role": "user", "content": "hi there"}
        assert "variables" not in sent
        assert metric(base, "llmops_router_requests_total", variant="a", code="400") == 1


def test_without_an_experiment_the_endpoint_template_or_nothing_applies(
    fake: str, tmp_path: Path
) -> None:
    prompt = ConfigMapDir(
        tmp_path / "prompt",
        {
            "name": "support-greeting-v2",
            "version": "2.0.0",
            "template": "Support for {{ product }}.",
            "variables": '["product"]',
        },
    )
    with router(fake, "--prompt-dir", prompt.root) as base:
        answer = httpx.post(
            f"{base}/v1/completions",
            timeout=10,
            json={"model": "fake", "prompt": " Q: why?", "variables": {"product": "Acme"}},
        )
        assert answer.status_code == 200
        assert answer.headers["x-llmops-variant"] == "support-greeting-v2"
        assert stats(fake)["requests"][-1]["body"]["prompt"] == "Support for Acme. Q: why?"
    with router(fake) as base:
        body = {"model": "fake", "messages": [{"role": "user", "content": "plain"}]}
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=10)
        assert answer.headers["x-llmops-variant"] == "none"
        assert stats(fake)["requests"][-1]["body"] == body
        assert httpx.get(f"{base}/v1/models").json()["data"] == [{"id": "fake"}]


def test_streaming_passes_through_chunk_by_chunk_and_counts_tokens(
    fake: str, tmp_path: Path
) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path) as base, httpx.Client(timeout=10) as client:
        body = {
            "model": "fake",
            "stream": True,
            "variables": {"product": "Acme"},
            "messages": [{"role": "user", "content": "one two three"}],
        }
        arrivals: list[tuple[float, bytes]] = []
        with client.stream(
            "POST",
            f"{base}/v1/chat/completions",
            json=body,
            headers={"x-fake-chunks": "5", "x-fake-chunk-delay": "0.3"},
        ) as resp:
            assert resp.headers["x-llmops-variant"] == "a"
            assert resp.headers["content-type"].startswith("text/event-stream")
            for chunk in resp.iter_raw():
                arrivals.append((time.monotonic(), chunk))
        text = b"".join(c for _, c in arrivals).decode()
        assert text.count("word") == 5
        assert text.rstrip().endswith("data: [DONE]")
        first_word = next(t for t, c in arrivals if b"word0" in c)
        last_word = next(t for t, c in arrivals if b"word4" in c)
        assert last_word - first_word > 0.9, "the chunks arrived all at once"
        assert stats(fake)["requests"][-1]["body"]["stream_options"] == {"include_usage": True}
        client.post(
            f"{base}/v1/chat/completions",
            json={**body, "stream": False},
            headers={"x-fake-chunks": "7"},
        )
        # System prompt "You are a for Acme." (5 words) + "one two three" (3): 8 per request.
        assert metric(base, "llmops_router_tokens_total", variant="a", type="prompt") == 16
        assert metric(base, "llmops_router_tokens_total", variant="a", type="completion") == 12
        assert metric(base, "llmops_router_time_to_first_token_seconds_count", variant="a") == 1
        assert metric(base, "llmops_router_request_duration_seconds_count", variant="a") == 2


def test_an_upstream_timeout_is_a_504_and_a_5xx_a_502_each_counted(
    fake: str, tmp_path: Path
) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path, "--read-timeout", "0.5") as base:
        started = time.monotonic()
        slow = chat(base, headers={"x-fake-latency": "3"})
        assert slow.status_code == 504
        assert time.monotonic() - started < 2.5
        assert slow.json()["error"]["type"] == "upstream_timeout"
        assert slow.headers["x-llmops-variant"] == "a"
        broken = chat(base, headers={"x-fake-status": "500"})
        assert broken.status_code == 502
        assert "500" in broken.json()["error"]["message"]
        refused = chat(base, headers={"x-fake-status": "422"})
        assert refused.status_code == 422  # the model server's own client errors pass through
        assert len(stats(fake)["requests"]) == 3  # one try each: no silent retry
        assert metric(base, "llmops_router_requests_total", variant="a", code="504") == 1
        assert metric(base, "llmops_router_requests_total", variant="a", code="502") == 1
        assert (
            metric(base, "llmops_router_upstream_errors_total", variant="a", reason="timeout") == 1
        )
        assert metric(base, "llmops_router_upstream_errors_total", variant="a", reason="5xx") == 1


def _wait_cancelled(fake: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while stats(fake)["cancelled"] < count:
        assert time.monotonic() < deadline, "the model server's request was not cancelled"
        time.sleep(0.05)


def test_a_client_that_leaves_cancels_the_upstream_request(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path) as base:
        body = {"model": "fake", "stream": True, "messages": [], "variables": {"product": "x"}}
        with (
            httpx.Client(timeout=10) as client,
            client.stream(
                "POST",
                f"{base}/v1/chat/completions",
                json=body,
                headers={"x-fake-chunks": "50", "x-fake-chunk-delay": "0.5"},
            ) as resp,
        ):
            next(resp.iter_raw())
        _wait_cancelled(fake, 1)
        with pytest.raises(httpx.ReadTimeout):
            chat(base, headers={"x-fake-latency": "3"}, timeout=0.5)
        _wait_cancelled(fake, 2)
        assert stats(fake)["completed"] == 0
        deadline = time.monotonic() + 5
        while metric(base, "llmops_router_requests_total", code="499") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_bad_requests_get_clear_errors(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path, "--max-body-bytes", "2048") as base:
        url = f"{base}/v1/chat/completions"
        big = httpx.post(url, content=b"{" + b" " * 4096 + b"}", timeout=10)
        assert big.status_code == 413
        not_json = httpx.post(url, content=b"{nope", timeout=10)
        assert not_json.status_code == 400
        assert "not valid JSON" in not_json.json()["error"]["message"]
        wrong = httpx.post(url, json={"messages": "hi", "variables": {"product": "x"}})
        assert wrong.json()["error"]["param"] == "messages"
        typed = httpx.post(url, json={"messages": [], "variables": {"product": {"x": 1}}})
        assert typed.status_code == 400
        assert typed.json()["error"]["param"] == "variables.product"
        assert httpx.get(url).status_code == 405
        assert stats(fake)["requests"] == []


def test_a_broken_table_stops_the_start_with_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "experiment.json"
    path.write_text(
        json.dumps(
            {"experiment": "x", "variants": [{"template": "a", "text": "t", "weight": "50"}]}
        ),
        encoding="utf-8",
    )
    from llmops.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["router", "--experiment-file", str(path), "--port", "1"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"{path}: variants[0].weight: must be a int" in err


def test_a_stream_that_breaks_off_ends_with_an_error_event_and_is_counted(
    fake: str, tmp_path: Path
) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path) as base:
        answer = chat(
            base,
            stream=True,
            headers={"x-fake-chunks": "5", "x-fake-break-after": "2", "x-fake-chunk-delay": "0.3"},
        )
        assert answer.status_code == 200  # the status line went out with the first chunk
        events = [line for line in answer.text.splitlines() if line.startswith("data: ")]
        assert [e for e in events if "word" in e] == events[:2]
        error = json.loads(events[-1].removeprefix("data: "))["error"]
        assert error["code"] == 502
        assert metric(base, "llmops_router_requests_total", variant="a", code="502") == 1
        assert metric(base, "llmops_router_upstream_errors_total", reason="protocol") == 1


def test_requests_over_the_concurrency_limit_get_a_503(fake: str, tmp_path: Path) -> None:
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with (
        router(fake, "--experiment-file", path, "--max-concurrency", "1") as base,
        ThreadPoolExecutor(1) as pool,
    ):
        busy = pool.submit(chat, base, headers={"x-fake-latency": "2"})
        deadline = time.monotonic() + 5
        while metric(base, "llmops_router_in_flight") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = chat(base)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert busy.result().status_code == 200
        assert chat(base).status_code == 200


def test_a_sidecar_router_serves_the_model_servers_metrics_with_its_own(
        fake: str, tmp_path: Path) -> None:
    """One scrape target per pod (annotation discovery) carries the router's series and the
    model server's queue the autoscaler reads; without the option only the router's."""
    _, path = _mounted(tmp_path, experiment({"a": 100, "b": 0}))
    with router(fake, "--experiment-file", path, "--merge-upstream-metrics") as base:
        assert chat(base).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=10).text
        assert "llmops_router_requests_total" in text
        assert "vllm:num_requests_waiting 3.0" in text
    with router(fake, "--experiment-file", path) as base:
        assert "vllm:num_requests_waiting" not in httpx.get(f"{base}/metrics", timeout=10).text
    with router("http://127.0.0.1:1", "--experiment-file", path,
                "--merge-upstream-metrics") as base:  # a model server that is not there
        text = httpx.get(f"{base}/metrics", timeout=10).text
        assert "llmops_router_" in text
