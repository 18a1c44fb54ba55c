"""The private bare mirror write-back commits into when the specs repo is a remote URL.

Input: the repo URL (https, ssh, scp-like or ``file://``), a directory to
keep the mirror in, the git timeout and the allowed hosts. Output: a bare
mirror (``<home>/writeback/<hash of the redacted URL>/mirror.git``) whose
branch is fetched fresh before each write, and pushes of one branch back to
the remote. Called by ``llmops.engine.source.writeback``.

Safety: git runs through ``gitcli.Git`` with the remote variant of its
environment, as for ``llmops.engine.source.snapshots.GitSource``: the URL
is validated by ``gitcli.parse_url`` and travels in git's environment
config (``remote.origin.url``), never in argv; no system or global config,
no prompts, hooks off, only the remote's protocol; credentials come from the
URL alone and every message is masked. Pushes are normal pushes (never
forced): a non-fast-forward rejection, or the remote failing to move the
branch because another push moved it meanwhile, raises ``PushRejected``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from llmops.engine import lockfile
from llmops.engine.errors import Unavailable
from llmops.engine.source import gitcli

_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info",
             # another push updated the branch while the remote was taking ours:
             "(failed to update ref)", "cannot lock ref", "incorrect old value provided")


class MirrorError(Unavailable):
    """git failed on the mirror or the remote; the message is redacted."""


class PushRejected(MirrorError):
    """The remote refused the push as not a fast-forward (someone pushed meanwhile)."""


class Mirror:
    """A remote specs repo, mirrored into ``work_dir/mirror.git`` for write-back commits."""

    def __init__(self, url: str, home: Path, *, timeout: float = 60.0,
                 allowed_hosts: Sequence[str] = (), allow_http: bool = False) -> None:
        try:
            self.remote = gitcli.parse_url(url, allowed_hosts=allowed_hosts,
                                          allow_http=allow_http)
        except gitcli.SourceConfigError as exc:
            raise MirrorError(gitcli.redact(str(exc))) from None
        if not timeout > 0:
            raise MirrorError(f"timeout must be positive, got {timeout!r}")
        self.url = self.mask(self.remote.url)
        digest = hashlib.sha256(gitcli.redact(self.remote.url).encode("utf-8")).hexdigest()
        self.work_dir = (Path(home) / "writeback" / digest[:24]).absolute()
        self.path = self.work_dir / "mirror.git"
        self.timeout = float(timeout)
        self._home = self.work_dir / "home"
        self._git = gitcli.Git(self.path, home=self._home, remote=self.remote,
                               timeout=self.timeout, follow_redirects=not allowed_hosts)

    def __repr__(self) -> str:
        return f"Mirror({self.url!r})"

    def mask(self, text: str) -> str:
        return gitcli.mask(text, self.remote.secrets)

    def _error(self, what: str, exc: gitcli.GitFailed) -> MirrorError:
        return MirrorError(self.mask(f"{self.url}: {what}: {exc.detail()}"))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the mirror (across processes and threads) and make sure it exists."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = lockfile.acquire(self.work_dir / ".lock")
        except OSError as exc:
            raise MirrorError(f"{self.url}: cannot lock the write-back mirror: "
                              f"{exc.strerror or exc}") from None
        try:
            self._prepare()
            yield
        finally:
            lockfile.release(fd)

    def _prepare(self) -> None:
        self._home.mkdir(mode=0o700, exist_ok=True)
        for leftover in self.work_dir.glob("tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            gitcli.init_mirror(self.path, home=self._home)
        except gitcli.GitFailed as exc:
            raise self._error("cannot create the write-back mirror", exc) from None

    def fetch(self, branch: str) -> None:
        """Make the mirror's ``branch`` what the remote has (forced: the remote wins)."""
        self.fetch_ref(f"refs/heads/{gitcli.check_branch(branch)}", branch)

    def fetch_ref(self, ref: str, shown: str = "", *, missing_ok: bool = False) -> bool:
        """Make the mirror's ``ref`` (a full ref name llmops chose) what the remote has;
        with ``missing_ok``, a ref the remote lacks is dropped here too (False)."""
        try:
            self._git.run("fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                          "--no-write-fetch-head", "--no-auto-gc", "--end-of-options",
                          "origin", f"+{ref}:{ref}")
        except gitcli.GitFailed as exc:
            if missing_ok and "couldn't find remote ref" in exc.stderr:
                with contextlib.suppress(gitcli.GitFailed):
                    self._git.run("update-ref", "-d", "--end-of-options", ref)
                return False
            raise self._error(f"fetch of {shown or ref} failed", exc) from None
        return True

    def push(self, branch: str) -> None:
        """Push the mirror's ``branch`` to the same branch of the remote (never forced)."""
        self.push_ref(f"refs/heads/{gitcli.check_branch(branch)}", branch)

    def push_ref(self, ref: str, shown: str = "") -> None:
        """Push the mirror's ``ref`` to the same ref of the remote (never forced);
        ``PushRejected`` when the remote's moved meanwhile."""
        try:
            self._git.run("push", "--quiet", "--no-verify", "--recurse-submodules=no",
                          "--end-of-options", "origin", f"{ref}:{ref}")
        except gitcli.GitFailed as exc:
            if exc.returncode > 0 and any(word in exc.stderr for word in _REJECTED):
                raise PushRejected(self.mask(f"{self.url}: push of {shown or ref} was "
                                             f"rejected: {exc.detail()}")) from None
            raise self._error(f"push of {shown or ref} failed", exc) from None

    def drop(self, branch: str) -> None:
        """Delete the mirror's ``branch`` (a review branch that never reached the remote)."""
        ref = f"refs/heads/{gitcli.check_branch(branch)}"
        with contextlib.suppress(gitcli.GitFailed):
            self._git.run("update-ref", "-d", "--end-of-options", ref)
