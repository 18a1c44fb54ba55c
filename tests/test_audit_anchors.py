"""The audit chain anchored in the specs repo, and its key rotated.

The attacker here holds the whole machine: the database, the anchor file and
even the audit key. What they cannot rewrite is the remote specs repo's
``refs/llmops/audit-anchors`` (a bare repo in tmp_path, reached by a file://
URL through write-back's mirror, as a real remote would be). Rotation: a new
key keys new rows, the retired one stays only to verify the old ones.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_audit_seal import KEY, fill, keyed_cli_env, overwrite, rechain, sealed

from conftest import CliResult
from llmops.engine import settings
from llmops.engine.run import anchoring, reconciler
from llmops.engine.service import compose
from llmops.engine.settings import Settings
from llmops.engine.source import anchorref, push, writeback
from llmops.engine.store import Store, audit, seal

pytest_plugins = ["store_fixtures"]
__all__ = ["keyed_cli_env", "sealed"]  # fixtures used here, defined there


def git(*args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          env=env).stdout


class Recorded(reconciler.Metrics):
    def __init__(self) -> None:
        self.anchors: list[tuple[str, bool]] = []

    def audit_anchor(self, sink: str, ok: bool) -> None:
        self.anchors.append((sink, ok))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(bare))
    return bare


def mirrored(remote: Path, tmp_path: Path) -> push.Mirror:
    repo = writeback.local_repo(remote.as_uri(), home=tmp_path / "home")
    assert isinstance(repo, push.Mirror)
    return repo


def remote_anchors(remote: Path) -> list[str]:
    """The entry ids the remote's anchor ref holds, oldest first."""
    out = git("--git-dir", str(remote), "log", "--reverse", "--format=%(trailers:key="
              "Llmops-Audit-Entry,valueonly)", anchorref.REF)
    return [line for line in out.split() if line]


def test_a_chain_and_anchor_file_rewritten_with_the_key_are_caught_by_the_repo(
        sealed: Store, remote: Path, tmp_path: Path) -> None:
    records = fill(sealed, 7)  # the anchor file has entry 5 (every 5)
    repo = anchoring.RepoAnchors(mirrored(remote, tmp_path), interval=3600)
    anchor = repo.write(sealed, Recorded())
    assert anchor is not None
    assert (anchor.id, anchor.hash) == (7, records[-1].hash)
    assert remote_anchors(remote) == ["7"]
    # With the key, the attacker rewrites entry 2, rehashes everything, and rewrites the
    # anchor file to match: the database and the file agree again.
    forged = rechain([replace(r, actor="mallory") if r.id == 2 else r for r in records],
                     audit.GENESIS_HASH, KEY)
    overwrite(sealed, forged)
    assert sealed.audit_seal is not None
    assert sealed.audit_seal.anchors is not None
    sealed.audit_seal.anchors.path.unlink()
    sealed.audit_seal.anchors.write(5, forged[4].hash)
    assert audit.verify(sealed).ok  # locally the forgery holds
    result = audit.verify(sealed, elsewhere=[repo.read(sealed.audit_seal.keys)])
    assert result.broken_id == 7
    assert result.reason.startswith("differs from its anchor of ")
    assert result.reason.endswith(" in the specs repo (refs/llmops/audit-anchors): the "
                                  "chain was rewritten")
    # Truncated below the repo's anchor, the anchor file trimmed too: still caught.
    overwrite(sealed, [], drop_from=6)
    result = audit.verify(sealed, elsewhere=[repo.read(sealed.audit_seal.keys)])
    assert (result.broken_id, result.reason.split(",")[0]) == (7, "truncated: entry 7")


def test_repo_anchors_are_bounded_and_only_written_when_the_head_moved(
        sealed: Store, remote: Path, tmp_path: Path) -> None:
    clock, metrics = Clock(), Recorded()
    repo = anchoring.RepoAnchors(mirrored(remote, tmp_path), interval=60, clock=clock)
    fill(sealed, 2)
    assert repo.write(sealed, metrics) is not None
    fill(sealed, 1)
    assert repo.write(sealed, metrics) is None  # within the interval
    clock.now += 61
    assert repo.write(sealed, metrics) is not None
    clock.now += 61
    assert repo.write(sealed, metrics) is None  # the head did not move
    assert remote_anchors(remote) == ["2", "3"]
    assert metrics.anchors == [("repo", True), ("repo", True)]
    assert sealed.audit_seal is not None
    source, items = repo.read(sealed.audit_seal.keys)
    assert [a.id for a in items if isinstance(a, seal.Anchor)] == [2, 3]
    result = audit.verify(sealed, elsewhere=[(source, items)])
    assert str(result) == ("audit chain intact: 3 entries; anchors checked: 0 in the anchor "
                           "file, 2 in the specs repo (refs/llmops/audit-anchors)")


def test_a_forged_repo_anchor_is_named(sealed: Store, remote: Path, tmp_path: Path) -> None:
    records = fill(sealed, 3)
    mallory = seal.Keyring(seal.AuditKey(b"m" * 32))
    forged = replace(mallory.sign(3, records[2].hash), key_id=KEY.key_id)
    commit = anchorref.append(mirrored(remote, tmp_path), anchoring.message(forged))
    repo = anchoring.RepoAnchors(mirrored(remote, tmp_path), interval=60)
    assert sealed.audit_seal is not None
    result = audit.verify(sealed, elsewhere=[repo.read(sealed.audit_seal.keys)])
    assert str(result) == (f"audit anchors broken: anchor commit {commit[:12]} is forged (its "
                           "MAC does not match the key) (in the specs repo "
                           "(refs/llmops/audit-anchors))")


def test_a_push_failure_does_not_fail_the_pass_and_is_retried(
        template_git_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(template_git_repo), str(remote))
    git("--git-dir", str(remote), "config", "receive.hideRefs", "refs/llmops")  # refuses it
    cfg = Settings(home=tmp_path / "home", git=settings.GitSettings(repo=remote.as_uri(),
                                                                    branch="main"))
    metrics = Recorded()
    with compose.open_store(cfg) as store:
        rec = compose.build_reconciler(cfg, store=store, out=tmp_path / "out",
                                       environments=["dev"], actuator="hydrate",
                                       metrics=metrics)
        (result,) = rec.run_once()
        assert result.ok, result
        assert metrics.anchors == [("repo", False)]
        head = audit.AuditLog(store).head()
        assert head is not None
        local = (tmp_path / "home" / seal.ANCHOR_FILE).read_text()
        assert f'"id":{head.id},' in local  # the local anchor is kept
        assert git("--git-dir", str(remote), "for-each-ref", "refs/llmops") == ""
        git("--git-dir", str(remote), "config", "--unset", "receive.hideRefs")
        (again,) = rec.run_once()  # the next pass retries (no new entry: same revision)
        assert again.ok
    assert metrics.anchors == [("repo", False), ("repo", True)]
    assert remote_anchors(remote) == [str(head.id)]
    assert git("--git-dir", str(remote), "rev-parse", "refs/heads/main") == git(
        "-C", str(template_git_repo), "rev-parse", "HEAD")


def test_cli_verify_fetches_and_checks_the_repo_anchors(
        keyed_cli_env: Settings, cli: Callable[..., CliResult], remote: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMOPS_GIT__REPO", remote.as_uri())
    monkeypatch.setenv("LLMOPS_GIT__BRANCH", "main")
    with compose.open_store(keyed_cli_env) as store:
        records = fill(store, 3)
        audit.AuditLog(store).anchor()
        repo = anchoring.RepoAnchors(mirrored(remote, tmp_path / "elsewhere"), interval=1)
        assert repo.write(store, Recorded()) is not None
    ok = cli("audit", "verify")
    assert (ok.code, ok.out.strip()) == (0, "audit chain intact: 3 entries; anchors checked: "
                                            "1 in the anchor file, 1 in the specs repo "
                                            "(refs/llmops/audit-anchors)")
    with compose.open_store(keyed_cli_env) as store:  # the key is stolen too
        assert store.audit_seal is not None
        overwrite(store, rechain([replace(records[2], reason="forged")], records[1].hash,
                                 store.audit_seal.key))
    (keyed_cli_env.home / seal.ANCHOR_FILE).unlink()
    local = cli("audit", "verify", "--local-only")
    assert local.code == 0
    assert local.out.splitlines()[1] == "specs repo anchors: not checked (--local-only)"
    caught = cli("audit", "verify")
    assert caught.code == 1
    assert caught.out.startswith("audit chain broken at entry 3: differs from its anchor")
    monkeypatch.setenv("LLMOPS_GIT__REPO", (tmp_path / "gone.git").as_uri())
    unreachable = cli("audit", "verify")
    assert unreachable.code == 1
    assert "cannot read the specs repo's audit anchors" in unreachable.err
    assert "--local-only" in unreachable.err


# --------------------------------------------------------------------------- rotation


def test_rotation_keys_new_rows_and_keeps_old_ones_verifiable(
        keyed_cli_env: Settings, cli: Callable[..., CliResult]) -> None:
    with compose.open_store(keyed_cli_env) as store:
        fill(store, 3)
        audit.AuditLog(store).anchor()
    key_file = keyed_cli_env.home / seal.KEY_FILE
    old_secret = key_file.read_text().strip()
    old = seal.read_key_file(key_file)
    rotated = cli("audit", "rotate-key")
    assert rotated.code == 0, rotated.err
    new = seal.read_key_file(key_file)
    retired = keyed_cli_env.home / f"{seal.KEY_FILE}.{old.key_id}"
    assert rotated.out.startswith(f"audit key rotated: new key id {new.key_id} in {key_file}; "
                                  f"the previous key {old.key_id} is kept in {retired}")
    assert old_secret not in rotated.out + rotated.err
    assert new.secret.hex() not in rotated.out + rotated.err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert seal.read_key_file(retired) == old
    with compose.open_store(keyed_cli_env) as store:  # a restarted process: the new key
        assert store.audit_seal is not None
        assert store.audit_seal.key == new
        fill(store, 2)
        audit.AuditLog(store).anchor()
        page = audit.AuditLog(store).query(limit=10)
    assert [e.key_id for e in reversed(page.entries)] == [old.key_id] * 3 + [new.key_id] * 2
    ok = cli("audit", "verify")
    assert ok.out.startswith("audit chain intact: 5 entries; anchors checked: 2 in the anchor "
                             "file"), ok.out + ok.err
    retired.unlink()  # the old key lost: its rows and anchors can no longer be verified
    missing = cli("audit", "verify")
    assert missing.code == 1
    assert missing.out.startswith(f"audit anchors broken: anchor line 1 is unverifiable: key "
                                  f"id {old.key_id} is not in the keyring ({new.key_id})")
    assert "Traceback" not in missing.out + missing.err
    assert old_secret not in missing.out + missing.err


def test_a_row_whose_key_is_missing_is_unverifiable(sealed: Store) -> None:
    fill(sealed, 2)
    newer = seal.AuditKey(b"n" * 32)
    result = audit.verify(sealed, sealed=seal.Seal(seal.Keyring(newer)))
    assert (result.ok, result.unverifiable, result.broken_id) == (False, True, 1)
    assert str(result) == (
        f"audit chain unverifiable at entry 1: keyed with key id {KEY.key_id}, which is not "
        f"in the keyring (current key id {newer.key_id}): put the retired key in "
        f"audit-key.{KEY.key_id} beside the key file, or in LLMOPS_AUDIT__PREVIOUS_KEYS")
    assert audit.verify(sealed, sealed=seal.Seal(seal.Keyring(newer, (KEY,)))).ok


def test_keys_given_in_settings_rotate_through_previous_keys(tmp_path: Path) -> None:
    old, new = "a" * 64, "b" * 64
    cfg = Settings(home=tmp_path / "home", audit=settings.AuditSettings(key=SecretStr(old)))
    with compose.open_store(cfg) as store:
        fill(store, 2)
    rotated = cfg.model_copy(update={"audit": settings.AuditSettings(
        key=SecretStr(new), previous_keys=[SecretStr(old)])})
    with compose.open_store(rotated) as store:
        fill(store, 1)
        assert audit.verify(store).ok
    unrotated = cfg.model_copy(update={"audit": settings.AuditSettings(key=SecretStr(new))})
    with compose.open_store(unrotated) as store:  # the old key dropped too soon
        result = audit.verify(store)
    assert (result.unverifiable, result.broken_id) == (True, 1)
    assert old not in str(result)
    assert new not in str(result)


def test_rotate_key_refuses_a_key_set_in_the_environment(
        keyed_cli_env: Settings, cli: Callable[..., CliResult],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_AUDIT__KEY", "c" * 64)
    refused = cli("audit", "rotate-key")
    assert refused.code == 1
    assert "rotate it there" in refused.err
    assert "c" * 64 not in refused.out + refused.err
    assert not (keyed_cli_env.home / seal.KEY_FILE).exists()
