"""Write-back: the API's few writes, each one commit in the specs repo, never a work-tree edit.

Role: turn a write (roll an endpoint back, conclude an experiment, change a
model's stage, record an uploaded model file) into one commit on a new
branch ``llmops/<action>/<name>-<short-uuid>`` ready for a pull request, or
straight onto the tracked branch when the target environment allows it
(``directCommits: true`` in ``llmops.yaml``). Input: the local specs repo, the
tracked branch, the spec's file, an edit (old file text -> new text) and the
caller. Output: ``WriteResult`` (commit, branch, whether it went direct and
why). Callers: ``llmops.api.routes.writes``.

How a commit is made (the user's work tree, index and HEAD are not touched, but
see below for a clean checked-out tracked branch):

1. the spec file is read from the tip of the tracked branch (not from the
   catalog or a work tree) and edited in memory: YAML field edits
   (``specedits``) use ruamel.yaml round-trip mode, so comments, quoting and
   layout are kept and only the changed fields differ; a rollback restores the
   whole file as it was;
2. the new blob goes into a private index (``GIT_INDEX_FILE`` in a temporary
   directory) read from the parent commit's tree, ``write-tree`` makes the
   tree (``gitcommit.tree_with``); git runs through ``gitcli.Git`` (an
   environment built from scratch, no system or global config, hooks off, no
   user string in an option position);
3. that tree is written into a temporary directory by ``gitobjects.export``
   (the one tree writer: no checkout, no filters) and validated with
   ``validate.load_and_validate``: any issue is an ``EditRejected`` carrying
   every issue, and nothing is committed; then the caller's ``Admit`` check
   (the use cases' policy verdicts) sees the spec set before and after the
   edit, and may refuse it (nothing is committed) or add notes to the answer;
4. ``commit-tree`` (author: the caller, ``<user>@users.llmops``; committer:
   llmops) and ``update-ref <ref> <new> <expected old>``
   (``gitcommit.swap_ref``): a new branch must not exist yet; a direct commit
   retries on a moved tip, re-reading and re-editing the file.

Steps 1-4 run holding ``writelock.branch_locked`` (an ``flock`` per repo and
tracked branch in the repo's git directory), so concurrent writes, from threads
or from several API processes, queue instead of racing; one that waits longer
than ``writelock.WAIT_SECONDS`` is ``writelock.Busy`` (a 409, nothing written).

Where a commit goes: an environment-scoped spec (endpoint, experiment, ...)
goes direct only when its environment sets ``directCommits: true``. A global
spec (a Model is used by every environment) goes direct only when *every*
environment allows it: a stage change reaches prod as surely as dev. A
tracked branch that is checked out in a (non-bare) work tree of the repo (the
clone ``llmops up`` follows) moves only as git's ``updateInstead`` would move
it: when that work tree has no uncommitted change to a tracked file, the
branch moves and the work tree and its index follow (``read-tree -m -u``, a
two-way fast-forward that never overwrites a local change); otherwise the
commit goes to a review branch. ``WriteResult.reason`` says which and why.
Apart from that case the user's work tree, index and HEAD are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.engine import errors
from llmops.engine.errors import LlmopsError, SpecError, SpecIssue
from llmops.engine.settings import Settings
from llmops.engine.source import branches, gitcli, gitcommit, gitobjects, push, writelock
from llmops.engine.spec import loader, repoconfig, validate
from llmops.engine.types import SpecKey

BRANCH_PREFIX = "llmops"
EMAIL_DOMAIN = "users.llmops"
COMMITTER = ("llmops", "llmops@localhost")
MAX_ATTEMPTS = 3
PUSH_ATTEMPTS = 6
"""Pushes of one direct commit to a remote (each redone on the remote's new tip after a
random pause that doubles, so writers on several hosts stop pushing in step)."""
MAX_HISTORY = 200
"""Commits of a spec file's history (and applied revisions) a rollback looks through."""
_SLUG = re.compile(r"[^a-z0-9.-]+")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]+@[^/:]+:")

Edit = Callable[[str], str]
"""Old file text -> new file text; raises ``WriteError`` subclasses to refuse."""

Admit = Callable[[Callable[[], validate.SpecSet | None], validate.SpecSet], tuple[str, ...]]
"""The last check before a commit: (the spec set at the parent, loaded when asked for;
None when it does not validate), the edited spec set -> notes for the answer. It
raises (an ``LlmopsError``) to refuse the write; nothing is committed then."""


# --------------------------------------------------------------------------- errors


class WriteError(LlmopsError):
    """A write could not be committed; nothing was written. The message says why."""


class RepoUnavailable(WriteError, errors.Unavailable):
    """The specs repo is not a local clone, or git failed on it (retryable)."""


class RepoNotConfigured(WriteError, errors.Conflict):
    """No specs repo that can take a commit is configured: an optional part this server
    runs without (409, as the API's other absent parts), so retrying will not help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, details={"retryable": False, "setting": "LLMOPS_GIT__REPO"})


_NO_REPO = ("write-back needs a local clone: settings.git.repo is empty (the bundled "
            "template is read-only); set LLMOPS_GIT__REPO or run `llmops up`")


class NothingToWrite(WriteError, errors.Conflict):
    """The edit changes nothing, or there is no earlier version to roll back to."""


class TargetMissing(WriteError, errors.Conflict):
    """The spec is not where the catalog said (the branch moved on since)."""


class SpecExists(WriteError, errors.Conflict):
    """A spec to create is already in the specs repo."""


class FileListed(WriteError, errors.Conflict):
    """A model file to record is already listed for its version (files are immutable)."""


class Conflicted(WriteError, errors.Conflict):
    """The tracked branch kept moving while the commit was being made."""


class NotAVariant(WriteError, errors.Conflict):
    """A winner that is not one of the experiment's variants (409: the request is well
    formed; the experiment as it stands in the repo decides)."""


class EditRejected(WriteError, errors.InvalidInput):
    """The edited repo does not validate (or the edit is invalid); carries every issue."""

    def __init__(self, message: str, issues: tuple[SpecIssue, ...] = ()) -> None:
        super().__init__(message)
        self.issues = issues


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Author:
    """The caller a commit is authored by."""

    user: str

    @property
    def name(self) -> str:
        return " ".join(self.user.replace("<", "").replace(">", "").split()) or "unknown"

    @property
    def email(self) -> str:
        local = _SLUG.sub("-", self.user.lower()).strip("-.") or "unknown"
        return f"{local[:64]}@{EMAIL_DOMAIN}"


@dataclass(frozen=True, slots=True)
class Target:
    """The spec a write is about: its kind, name, file, and environment (``""``: global)."""

    kind: str
    name: str
    file: str
    environment: str = ""
    spec_name: str = ""
    """The spec's key name when it differs from ``name`` (a model's ``name@version``)."""

    @property
    def key(self) -> SpecKey:
        return SpecKey(self.kind, self.environment, self.spec_name or self.name)


@dataclass(frozen=True, slots=True)
class WriteResult:
    commit: str
    branch: str
    direct: bool
    parent: str
    file: str
    reason: str
    """Why the commit went where it went."""
    spec: dict[str, Any]
    """The spec as committed (plain JSON data); empty when the edit removed it."""
    notes: tuple[str, ...]
    """What the ``Admit`` check said about the accepted edit (e.g. a change window)."""


# --------------------------------------------------------------------------- the repo


Repo = Path | push.Mirror
"""A local clone (commits land in it) or a remote's mirror (commits are pushed)."""


def local_repo(repo_setting: str, *, home: Path | None = None, timeout: float = 60.0,
               allowed_hosts: Sequence[str] = ()) -> Repo:
    """The specs repo: a local git directory, or (given ``home``) a remote's mirror.

    Without ``home`` a remote URL (or no repo at all: the bundled template)
    cannot take a commit, and ``RepoNotConfigured`` says so; a ``file://`` URL is
    then read as the local path it names. With ``home``, a URL (``file://``
    included) gives a ``push.Mirror`` under ``home/writeback``.
    """
    if not repo_setting.strip():
        raise RepoNotConfigured(_NO_REPO)
    if home is not None and _URL.match(repo_setting):
        try:
            return push.Mirror(repo_setting, home, timeout=timeout,
                                  allowed_hosts=allowed_hosts)
        except push.MirrorError as exc:
            raise RepoUnavailable(f"write-back cannot use the specs repo: {exc}") from None
    if repo_setting.startswith("file://"):
        repo_setting = repo_setting.removeprefix("file://")
    elif _URL.match(repo_setting):
        raise RepoNotConfigured("write-back needs a local clone: settings.git.repo is a "
                                f"remote URL ({gitcli.redact(repo_setting)[:200]})")
    path = Path(repo_setting).expanduser()
    if not path.is_dir():
        raise RepoNotConfigured(f"write-back needs a local clone: {path} is not a directory")
    return path.resolve()


def repo_for(settings: Settings) -> Repo:
    """``local_repo`` of ``settings.git.repo``, remote URLs mirrored under ``settings.home``."""
    return local_repo(settings.git.repo, home=settings.home,
                      timeout=settings.git.timeout_seconds,
                      allowed_hosts=settings.git.allowed_hosts)


def tracked_branch(settings: Settings) -> str:
    """The branch writes go to: ``settings.git.branch``, else the repo's default branch
    (what its HEAD names), read and remembered in ``settings`` on first use."""
    if settings.git.branch:
        return settings.git.branch
    repo = settings.git.repo.removeprefix("file://")
    if not repo.strip():
        raise RepoNotConfigured(_NO_REPO)
    try:
        settings.git.branch = gitcli.default_branch(repo, timeout=settings.git.timeout_seconds,
                                                    allowed_hosts=settings.git.allowed_hosts)
    except gitcli.GitFailed as exc:
        raise RepoUnavailable("write-back cannot read the specs repo's default branch: "
                              f"{gitcli.redact(exc.detail())[:300]}") from None
    return settings.git.branch


def branch_name(action: str, name: str) -> str:
    """``llmops/<action>/<name>-<8 hex>``, checked by git's own rules."""
    slug = _SLUG.sub("-", name.lower()).strip("-.")[:80] or "spec"
    return gitcli.check_branch(f"{BRANCH_PREFIX}/{action}/{slug}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def git_errors() -> Iterator[None]:
    """git failures as ``RepoUnavailable``, unsafe trees as well."""
    try:
        yield
    except gitcli.GitFailed as exc:
        raise RepoUnavailable(f"git {exc.verb} failed: {exc.detail()}") from None
    except gitobjects.UnsafeTree as exc:
        raise RepoUnavailable(str(exc)) from None


def open_scratch(repo: Path, scratch: Path) -> gitcli.Git:
    try:
        return gitcli.Git.open(repo, scratch)
    except gitcli.GitFailed as exc:
        raise RepoUnavailable(f"write-back needs a local clone: {repo}: not a git "
                              f"repository ({exc.detail()})") from None


def _tip(git: gitcli.Git, branch: str) -> str:
    tip = git.resolve(f"refs/heads/{branch}")
    if tip is None:
        raise RepoUnavailable(f"the tracked branch {branch} does not exist in the specs repo")
    return tip


def read_file(git: gitcli.Git, commit: str, file: str) -> tuple[gitobjects.TreeEntry, str] | None:
    """(tree entry, text) of ``file`` in ``commit``, or None when absent."""
    entry = gitobjects.entry_at(git, commit, file)
    if entry is None:
        return None
    return entry, gitobjects.read_blob(git, entry.blob).decode("utf-8", "replace")


def _checked_out(git: gitcli.Git, branch: str) -> Path | None:
    """The work tree of the repo that has ``branch`` checked out, if any."""
    path: str | None = None
    for line in git.text("worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{branch}" and path is not None:
            return Path(path)
    return None


def _tree_git(work_tree: Path, scratch: Path) -> gitcli.Git:
    """git in ``work_tree`` itself (its own index), with a private ``HOME`` and the
    repo's filter drivers off (``status`` and ``read-tree -u`` would run them)."""
    return gitcli.Git(home=scratch, cwd=work_tree).without_filters()


def _clean(work_tree: Path, scratch: Path) -> bool:
    """Whether ``work_tree`` has no change to a tracked file (staged or not)."""
    try:
        out = _tree_git(work_tree, scratch).text("status", "--porcelain",
                                                 "--untracked-files=no")
    except gitcli.GitFailed:
        return False
    return not out.strip()


def _update_work_tree(work_tree: Path, scratch: Path, old: str, new: str) -> str:
    """Move a clean checked-out work tree from ``old`` to ``new`` (git's updateInstead);
    ``""``, or why it could not be (the branch moved anyway)."""
    try:
        _tree_git(work_tree, scratch).run("read-tree", "-m", "-u", "--end-of-options", old,
                                          new)
    except gitcli.GitFailed as exc:
        return (f"; the work tree {work_tree} could not follow ({exc.detail()[:200]}): "
                "run git checkout there")
    return ""


def _validate_tree(git: gitcli.Git, tree: str, dest: Path) -> validate.SpecSet:
    """Write ``tree`` into the new directory ``dest`` and validate it."""
    label = f"the edited tree {tree[:12]}"
    dest.mkdir()
    gitobjects.export(git, gitobjects.list_tree(git, tree, label=label), dest, label=label,
                      max_blob_bytes=loader.DEFAULT_LIMITS.max_file_bytes)
    try:
        return validate.load_and_validate(dest, cache=None)
    except SpecError as exc:
        raise EditRejected("the edited specs do not validate; nothing was committed",
                           exc.issues) from None


def _parent_specs(git: gitcli.Git, tip: str, file: str, edited: Path,
                  dest: Path) -> validate.SpecSet | None:
    """The spec set at ``tip``, the edit's parent, or None when it does not validate: the
    edited tree's export ``edited`` with ``file`` as it is at ``tip`` (the one file the
    edit changes), so the parent costs a copy and one blob read, not a second export."""
    shutil.copytree(edited, dest)
    before = read_file(git, tip, file)
    if before is None:
        (dest / file).unlink(missing_ok=True)
    else:
        (dest / file).write_bytes(gitobjects.read_blob(git, before[0].blob))
    try:
        return validate.load_and_validate(dest, cache=None)
    except SpecError:
        return None


def _admitted(git: gitcli.Git, scratch: Path, tip: str, file: str,
              spec_set: validate.SpecSet, how: _How) -> tuple[str, ...]:
    """The ``Admit`` check's notes (it raises to refuse); () without a check."""
    if how.admit is None:
        return ()
    before = scratch.with_name(f"{scratch.name}-parent")
    return how.admit(lambda: _parent_specs(git, tip, file, scratch, before), spec_set)


def _direct(config: repoconfig.RepoConfig, environment: str) -> tuple[bool, str]:
    envs = config.environments
    if environment:
        env = envs.get(environment)
        if env is not None and env.directCommits:
            return True, f"environment {environment} allows direct commits"
        return False, f"environment {environment} takes changes through review branches"
    refusing = sorted(name for name, env in envs.items() if not env.directCommits)
    if refusing:
        return False, ("a global spec is used by every environment; "
                       f"{', '.join(refusing)} take changes through review branches")
    return True, "every environment allows direct commits"


@contextlib.contextmanager
def synced(repo: push.Mirror, branch: str) -> Iterator[Path]:
    """The mirror, locked, with ``branch`` fetched fresh from the remote."""
    try:
        with repo.locked():
            repo.fetch(branch)
            yield repo.path
    except push.MirrorError as exc:
        raise RepoUnavailable(str(exc)) from None


def commit_edit(repo: Repo, tracked: str, target: Target, edit: Edit, *, action: str,
                author: Author, message: str, create: bool = False,
                onto: str = "", admit: Admit | None = None) -> WriteResult:
    """Commit ``edit`` of ``target.file`` on top of ``tracked``; see the module docstring.

    ``create``: the file must not exist yet (``SpecExists`` otherwise) and
    ``edit`` gets ``""``. ``onto``: the review branch an earlier write of the
    same spec went to; while it exists and is not merged into ``tracked``
    the commit is added on top of it (so a model's files accumulate on one
    branch before review) instead of starting a new branch.

    For a remote's mirror: fetch ``tracked`` (and ``onto``), commit in the
    mirror, push the branch (never forced). A direct commit whose push is
    rejected (someone pushed meanwhile, or updated the branch while we pushed) is
    redone on the fetched tip after a short random pause, up to ``PUSH_ATTEMPTS``
    pushes in all; then ``Conflicted``.

    ``admit``: checked on every attempt, after the edited tree validates and
    before anything is committed (see ``Admit``).
    """
    how = _How(action=action, author=author, message=message, create=create, onto=onto,
               admit=admit)
    if isinstance(repo, Path):
        return _commit_local(repo, tracked, target, edit, how)
    branch = gitcli.check_branch(tracked)
    with synced(repo, branch) as mirror:
        if onto:
            try:
                repo.fetch(onto)
            except push.MirrorError:
                how = dataclasses.replace(how, onto="")  # gone on the remote: a new branch
        for attempt in range(PUSH_ATTEMPTS):
            result = _commit_local(mirror, branch, target, edit, how)
            try:
                repo.push(result.branch)
            except push.PushRejected as exc:
                if not result.direct:
                    repo.drop(result.branch)
                    raise Conflicted(f"{exc}; retry") from None
                repo.fetch(branch)  # the remote wins: redo the edit on its new tip
                if attempt + 1 < PUSH_ATTEMPTS:
                    time.sleep(min(2.0, random.uniform(0.05, 0.25) * 2 ** attempt))
                    continue
                raise Conflicted(f"{branch} kept moving on the remote while committing "
                                 f"({PUSH_ATTEMPTS} pushes rejected): {exc}") from None
            except push.MirrorError:
                if result.direct:
                    with contextlib.suppress(push.MirrorError):
                        repo.fetch(branch)
                else:
                    repo.drop(result.branch)
                raise
            return result
    raise Conflicted(f"{branch} kept moving on the remote while committing")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _How:
    """How one write is committed: its action, author, message, and create/stack options."""

    action: str
    author: Author
    message: str
    create: bool = False
    onto: str = ""
    admit: Admit | None = None


def _open_branch(git: gitcli.Git, tracked: str, onto: str) -> str:
    """``onto`` if it is an llmops review branch that exists and is not merged; else ``""``."""
    if not onto or not onto.startswith(f"{BRANCH_PREFIX}/"):
        return ""
    onto = gitcli.check_branch(onto)
    if git.resolve(f"refs/heads/{onto}") is None:
        return ""
    try:
        git.run("merge-base", "--is-ancestor", "--end-of-options", f"refs/heads/{onto}",
                f"refs/heads/{tracked}")
    except gitcli.GitFailed:
        return onto  # not an ancestor of the tracked branch: still open
    return ""


def _commit_local(repo: Path, tracked: str, target: Target, edit: Edit,
                  how: _How) -> WriteResult:
    branch = gitcli.check_branch(tracked)
    file = branches.check_path(target.file)
    if not file or not file.endswith((".yaml", ".yml")):
        raise TargetMissing(f"{target.kind}/{target.name}: {target.file!r} is not a spec file")
    with tempfile.TemporaryDirectory(prefix="llmops-write-") as tmp, git_errors():
        git = open_scratch(repo, Path(tmp))
        # One llmops write per repo and tracked branch at a time, across processes;
        # the compare-and-swap below still catches writers that bypass the lock.
        with writelock.branch_locked(common_dir(git), branch, shown=str(repo)):
            stack = _open_branch(git, branch, how.onto)
            for attempt in range(MAX_ATTEMPTS):
                result = _attempt(git, Path(tmp) / f"tree-{attempt}", branch, stack, file,
                                  target, edit, how)
                if result is not None:
                    return result
                # the tracked branch moved (outside llmops): redo the edit on its new tip
    raise Conflicted(f"{branch} kept moving while committing; gave up after {MAX_ATTEMPTS} "
                     "attempts")


def common_dir(git: gitcli.Git) -> Path:
    """The git directory all work trees of the repo share (where the write lock lives)."""
    found = Path(git.text("rev-parse", "--git-common-dir").strip())
    return found if found.is_absolute() else (git.cwd / found).resolve()


def _attempt(git: gitcli.Git, scratch: Path, branch: str, stack: str, file: str,
             target: Target, edit: Edit, how: _How) -> WriteResult | None:
    """One try at the commit; None when the tracked branch moved meanwhile."""
    base = stack or branch
    tip = _tip(git, base)
    change = _created(git, base, tip, file, target, edit) if how.create \
        else _edited(git, base, tip, file, target, edit)
    tree = gitcommit.tree_with(git, tip, {file: change})
    spec_set = _validate_tree(git, tree, scratch)
    notes = _admitted(git, scratch, tip, file, spec_set, how)
    work_tree: Path | None = None
    if stack:
        direct, reason = False, (f"added to {stack}, the review branch of an earlier write "
                                 "of this spec that is not merged yet")
    else:
        direct, reason, work_tree = _destination(git, branch, spec_set.config,
                                                 target.environment, scratch.parent)
    who = gitcommit.Identity(how.author.name, how.author.email)
    commit = gitcommit.commit_tree(git, tree, [tip], how.message, author=who,
                                   committer=gitcommit.Identity(*COMMITTER))
    moves = direct or bool(stack)
    ref_branch = branch if direct else (stack or branch_name(how.action, target.name))
    if gitcommit.swap_ref(git, f"refs/heads/{ref_branch}", commit, tip if moves else None,
                          f"llmops {how.action}: {target.kind}/{target.name}"):
        if work_tree is not None:
            reason += _update_work_tree(work_tree, scratch.parent, tip, commit)
        item = spec_set.get(target.key)
        return WriteResult(commit=commit, branch=ref_branch, direct=direct, parent=tip,
                           file=file, reason=reason,
                           spec=item.spec.model_dump(mode="json") if item is not None else {},
                           notes=notes)
    if not moves:
        raise Conflicted(f"branch {ref_branch} appeared while committing; retry")
    if stack:
        raise Conflicted(f"branch {stack} moved while committing; retry")
    return None


def _created(git: gitcli.Git, branch: str, tip: str, file: str, target: Target,
             edit: Edit) -> tuple[str, str]:
    """(mode, blob) of the new ``file``; ``SpecExists`` when ``tip`` already has it."""
    if read_file(git, tip, file) is not None:
        raise SpecExists(f"{target.kind}/{target.name}: {file} already exists on {branch}",
                         details={"file": file})
    return gitobjects.REGULAR, gitcommit.write_blob(git, edit("").encode("utf-8"))


def _edited(git: gitcli.Git, branch: str, tip: str, file: str, target: Target,
            edit: Edit) -> tuple[str, str]:
    """(mode, blob) of ``file`` at ``tip`` after ``edit``; refuses a missing file or no change."""
    found = read_file(git, tip, file)
    if found is None:
        raise TargetMissing(f"{target.kind}/{target.name}: {file} is not on {branch} "
                            "any more; wait for the next reconcile and retry")
    entry, old_text = found
    new_text = edit(old_text)
    if new_text == old_text:
        raise NothingToWrite(f"{target.kind}/{target.name}: already as requested; "
                             "nothing to commit")
    mode = entry.mode if entry.mode in (gitobjects.REGULAR, gitobjects.EXECUTABLE) \
        else gitobjects.REGULAR
    return mode, gitcommit.write_blob(git, new_text.encode("utf-8"))


def _destination(git: gitcli.Git, branch: str, config: repoconfig.RepoConfig,
                 environment: str, scratch: Path) -> tuple[bool, str, Path | None]:
    """Whether the commit goes straight onto ``branch``, why, and the checked-out work
    tree to bring along (see the module docstring)."""
    direct, reason = _direct(config, environment)
    work_tree = _checked_out(git, branch) if direct else None
    if work_tree is None:
        return direct, reason, None
    if not _clean(work_tree, scratch):
        return False, (f"{reason}, but {branch} is checked out in {work_tree} with "
                       "uncommitted changes, which are never overwritten"), None
    return True, (f"{reason}; {branch} is checked out in a clean work tree, which is "
                  "updated with it"), work_tree
