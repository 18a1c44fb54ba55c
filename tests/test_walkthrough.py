"""The first hour, end to end: README's quick start, then the template README, in order.

A new user's path as the READMEs write it, against `llmops up` on loopback: `up` in a
fresh folder (quiet: one line per environment, no log lines), the README's shell blocks
of the quick start (PATH, `llmops status` from inside the specs repo, a viewer token's
curl, the trusted-proxy signature made with openssl), a write through the API committed
to the repo `up` follows, then every console command of the template README (`Using the
CLI` and the promotion walkthrough) in a repo from `llmops init`, each exiting 0. Then
README's seed script (`The REST API`: stand-in model files, register, multi-file upload,
deploy, list, rollback, health, experiment create and conclude, training job, costs) and
the client examples' block as written, against another
`up` started with README's moto settings on moto's S3 server: every answer a success, and
what each call did checked in git and S3 (about 15 s on a 2-core machine).

`bash .ci/bootstrap` itself is not run here (it would reinstall the environment this test
runs in); `.ci/bootstrap`'s second run is measured by hand (see the branch's report).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from conftest import ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PROXY_SECRET = "change-me"  # as README writes it
IDENTITY = {"GIT_AUTHOR_NAME": "New User", "GIT_AUTHOR_EMAIL": "new.user@example.com",
            "GIT_COMMITTER_NAME": "New User", "GIT_COMMITTER_EMAIL": "new.user@example.com"}


def blocks(markdown: str, lang: str) -> list[str]:
    """The fenced code blocks of ``markdown`` in language ``lang``, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", markdown, re.S)


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def console_commands(text: str) -> list[str]:
    return [line.strip().removeprefix("$ ").strip() for block in blocks(text, "console")
            for line in block.splitlines() if line.strip().startswith("$ ")]


def user_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "GIT_"))}
    return {**env, **IDENTITY, "HOME": str(tmp / "home"), "PATH": f"{BIN}:{env['PATH']}",
            "LLMOPS_DAEMON__INTERVAL_SECONDS": "3600",
            "LLMOPS_API__TRUSTED_PROXIES": '["127.0.0.1"]',
            "LLMOPS_API__PROXY_SECRET": PROXY_SECRET}


def bash(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def running_up(tmp_path: Path, extra: dict[str, str] | None = None
               ) -> Iterator[tuple[Path, dict[str, str], str, list[str]]]:
    """``llmops up`` started as the README says, in a fresh folder, with ``extra`` in its
    environment; (folder, env, API base, the lines it printed up to 'reconciling every
    change')."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (tmp_path / "home").mkdir()
    env = {**user_env(tmp_path), **(extra or {})}
    proc = subprocess.Popen([str(BIN / "llmops"), "up", "--api-port", "0"], cwd=clone,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        printed: list[str] = []
        while not printed or not printed[-1].startswith("reconciling every change"):
            line = proc.stdout.readline()
            assert line, "llmops up ended early: " + "".join(printed) + proc.stderr.read()
            printed.append(line.rstrip("\n"))
        found = re.search(r"API\s+(http://\S+)/llm-ops/v1/reconcile/status", "\n".join(printed))
        assert found is not None, printed
        yield clone, env, found.group(1), printed
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str, list[str]]]:
    with running_up(tmp_path) as started:
        yield started


def call(url: str, token: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers,
                                     method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.load(response)
    return result


def wait_applied(api: str, token: str, env: str, revision: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = call(f"{api}/llm-ops/v1/reconcile/status", token)["data"]["environments"]
        if any(e["environment"] == env and e.get("lastAppliedRevision") == revision
               for e in status):
            return
        time.sleep(0.2)
    raise AssertionError(f"{env} never applied {revision[:12]}: {status}")


def test_readme_quick_start_then_the_template_readme(
        up: tuple[Path, dict[str, str], str, list[str]]) -> None:
    clone, env, api, printed = up
    # `up` is quiet: one line per environment, where things are, no log lines.
    for name in ("dev", "stg", "prod"):
        assert len([line for line in printed if line.startswith(f"{name}: ")]) == 1, printed
    assert not [line for line in printed if "INFO" in line or "alembic" in line], printed
    home = clone / ".llmops"
    assert sorted(p.name for p in (home / "tokens").iterdir()) == [
        "admin", "auditor", "ml-engineer", "viewer"]

    # README, quick start: every sh block after the install line, as written (the port
    # is the one `up` picked instead of 8080).
    readme = section((ROOT / "README.md").read_text(), "Quick start")
    port = api.rsplit(":", 1)[1]
    for block in blocks(readme, "sh")[1:]:
        if block.rstrip().endswith("\nllmops up"):
            # `up` with these settings in its environment: the fixture's `up` runs so.
            assert f"LLMOPS_API__PROXY_SECRET={PROXY_SECRET}" in block, block
            assert "LLMOPS_API__TRUSTED_PROXIES='[\"127.0.0.1\"]'" in block, block
            continue
        out = bash(block.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), clone, env)
        if "llmops status" in block:
            assert "dev: Ready" in out
            assert "health: not observed (hydrate actuator" in out
        if "curl" in block:
            answer = json.loads(out)
            assert answer["status"] == "success", answer

    # A write through the API is a commit in the repo `up` follows.
    ml = (home / "tokens" / "ml-engineer").read_text().strip()
    models = call(f"{api}/llm-ops/v1/catalog/models", ml)["data"]["items"]
    draft = next(m for m in models if m["spec"]["stage"] == "draft")
    done = call(f"{api}/llm-ops/v1/catalog/models/{draft['id']}/promote", ml,
                {"stage": "approved"})
    assert done["status"] == "success", done
    branches = subprocess.run(["git", "-C", str(home / "specs"), "branch", "--list",
                               "llmops/*"], capture_output=True, text=True, check=True)
    assert done["data"]["branch"] in branches.stdout

    # Conclude an experiment: another commit, on another review branch.
    experiments = call(f"{api}/llm-ops/v1/prompts/experiments?environment=prod", ml)
    running = next(e for e in experiments["data"]["items"] if e["spec"]["state"] == "running")
    winner = running["spec"]["variants"][0]["templateRef"]
    concluded = call(f"{api}/llm-ops/v1/prompts/experiments/{running['id']}/conclude", ml,
                     {"winnerTemplateId": winner, "notes": "walkthrough"})
    assert concluded["status"] == "success", concluded

    # A change committed to the followed repo, reconciled on a trigger, then rolled back
    # through the API.
    specs = home / "specs"
    stg = specs / "endpoints" / "stg" / "support-chat.yaml"
    stg.write_text(stg.read_text().replace("    min: 1\n", "    min: 2\n", 1))
    bash("git commit -qam 'stg: support-chat min 2'", specs, env)
    head = bash("git rev-parse HEAD", specs, env).strip()
    assert call(f"{api}/llm-ops/v1/reconcile/trigger", ml, {})["status"] == "success"
    wait_applied(api, ml, "stg", head)
    endpoints = call(f"{api}/llm-ops/v1/serving/endpoints?environment=stg", ml)
    chat = next(e for e in endpoints["data"]["items"] if e["name"] == "support-chat")
    rolled = call(f"{api}/llm-ops/v1/serving/endpoints/{chat['id']}/rollback", ml, {})
    assert rolled["status"] == "success", rolled
    assert "min: 1" in bash(f"git show {rolled['data']['commit']}:endpoints/stg/"
                            "support-chat.yaml", specs, env)

    # The template README: `Using the CLI`, then the walkthrough, every command in order
    # (the install line aside: this environment has llmops installed).
    template = (ROOT / "specs_repo_template" / "README.md").read_text()
    commands = [c for c in console_commands(template) if not c.startswith("pip install")]
    assert commands[0].startswith("llmops validate ")
    assert any(c.startswith("llmops plan --env stg") for c in commands)
    work = clone / "user"
    work.mkdir()
    first = "llmops init my-specs && cd my-specs"
    script = "\n".join([first, *[f"echo '+ {c}' >&2; {c}" for c in commands]])
    bash(script, work, env)
    log = subprocess.run(["git", "-C", str(work / "my-specs"), "log", "--format=%s"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert set(log[:2]) == {'Revert "support-chat 1.3.0 in prod"',
                            'Revert "support-chat 1.3.0 in stg"'}, log


# --------------------------------------------------------------------------- the seed's calls

CURL_LOG = """\
curl() {  # README's curl, answers also kept one a line in $SEED_LOG for the test to read
  local rc
  command curl "$@" | tee -a "$SEED_LOG"; rc=${PIPESTATUS[0]}
  echo >> "$SEED_LOG"
  return "$rc"
}
"""


@pytest.fixture
def moto_s3() -> Iterator[str]:
    """moto's S3 server, as README starts it but on a free port, in this process."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


def readme_s3(block: str, moto: str, tmp_path: Path) -> dict[str, str]:
    """README's moto block, run on ``moto`` (the server line aside: the fixture started it,
    ``llmops up`` aside: the caller starts it with it): the environment it exports."""
    lines = block.replace("127.0.0.1:5055", moto).replace(".venv/bin/python", sys.executable)
    first, *rest, last = lines.strip().splitlines()
    assert first.endswith("-m moto.server -p 5055 &"), block
    assert last == "llmops up", block
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "AWS_"))}
    out = bash("\n".join([*rest, "env -0"]), tmp_path, env)
    exported = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in exported.items() if k.startswith(("LLMOPS_S3__", "AWS_"))}


def answers(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_readme_seed_calls_against_up_with_moto_s3(tmp_path: Path, moto_s3: str) -> None:
    readme = section((ROOT / "README.md").read_text(), "The REST API")
    # The schemathesis command README shows there runs for minutes against a scratch
    # `up`; tests/test_api_contract.py runs the same checks in-process.
    setup, seed, s3_block, examples = [b for b in blocks(readme, "sh")
                                       if not b.lstrip().startswith("schemathesis ")]
    extra = readme_s3(s3_block, moto_s3, tmp_path)
    assert extra["LLMOPS_S3__ENDPOINT_URL"] == f"http://{moto_s3}"
    with running_up(tmp_path, extra) as (clone, env, api, _printed):
        # The model's files too are the script's: a newcomer has none at hand.
        port = api.rsplit(":", 1)[1]
        log = tmp_path / "seed.log"
        script = "\n".join([CURL_LOG, setup, seed]).replace("127.0.0.1:8080",
                                                            f"127.0.0.1:{port}")
        bash(script, clone, {**env, "SEED_LOG": str(log)}, timeout=90)
        # Then the client examples block, as written (the API's port is `up`'s, the
        # examples this checkout's: `clone` holds only what `up` made).
        shown = bash(examples.replace(".venv/bin/python", sys.executable)
                     .replace(" examples/", f" {ROOT}/examples/"), clone,
                     {**env, "LLMOPS_API_URL": api}, timeout=60)
    got = answers(log)
    assert [a for a in got if a["status"] != "success"] == [], json.dumps(got, indent=1)
    check_seed_effects(got, clone / ".llmops" / "specs", env, moto_s3)
    assert re.search(r"^dev +applied [0-9a-f]{12} ready=True", shown, re.M), shown
    assert re.search(r"^dev +support-chat +/v1/support-chat +NotObserved +support-chat@1\.4\.0",
                     shown, re.M), shown
    assert re.search(r"^endpoint helper \(\S+\): commit [0-9a-f]{12} for review on "
                     r"llmops/deploy/helper-", shown, re.M), shown


def check_seed_effects(got: list[dict[str, Any]], specs: Path, env: dict[str, str],
                       moto_s3: str) -> None:
    """What README's seed calls did, from their answers, the specs repo and the bucket."""

    def answer(start: str) -> dict[str, Any]:
        found = [a["data"] for a in got if a["message"].startswith(start)]
        assert len(found) == 1, (start, [a["message"] for a in got])
        data: dict[str, Any] = found[0]
        return data

    def show(commit: str, file: str) -> str:
        return bash(f"git show {commit}:{file}", specs, env)

    # The model, its three files in S3 (and recorded), merged into the followed branch.
    model = answer("model support-chat@1.4.0 committed to llmops/create/")
    upload = answer("config.json, model.safetensors, tokenizer.json uploaded and recorded")
    assert upload["branch"] == model["branch"]
    s3 = boto3.client("s3", endpoint_url=f"http://{moto_s3}", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    stored = s3.list_objects_v2(Bucket="llmops-models", Prefix="models/support-chat/1.4.0/")
    assert {o["Key"].rsplit("/", 1)[1]: o["Size"] for o in stored["Contents"]} == {
        "config.json": 23, "model.safetensors": 4096, "tokenizer.json": 18}
    assert "sha256: " in show("main", "models/support-chat-1.4.0.yaml")
    # The deploy merged and applied by the daemon, listed as NotObserved (hydrate) ...
    deployed = answer("endpoint support-chat redeployed to llmops/deploy/")
    head = bash("git rev-parse main", specs, env).strip()
    assert "version: 1.4.0" in show(head, "endpoints/dev/support-chat.yaml")
    listed = {e["name"]: e for e in answer("2 endpoint(s)")["items"]}
    assert listed["support-chat"]["status"]["health"] == "NotObserved"
    assert listed["support-chat"]["status"]["appliedRevision"] == head
    assert answer("endpoint support-chat in dev: NotObserved")["health"] == "NotObserved"
    # ... then rolled back to what dev ran before it, on a review branch.
    rolled = answer("rollback of support-chat committed to llmops/rollback/")
    assert rolled["parent"] == deployed["commit"]
    assert "version: 1.3.0" in show(rolled["commit"], "endpoints/dev/support-chat.yaml")
    # The stg experiment, concluded on its review branch; the training job; the costs.
    concluded = answer("conclusion of support-greeting-v2-vs-support-greeting-v3 committed")
    experiment = show(concluded["commit"], concluded["file"])
    assert "state: concluded" in experiment
    assert "winner: support-greeting-v3" in experiment
    assert answer("training job support-chat-dpo committed to llmops/train/")["created"]
    costs = got[-1]
    assert costs["message"].endswith("GPU hours over 24h"), costs
    assert costs["data"]["window"] == "24h"
