"""The git layer: every git command llmops runs goes through this module.

Role: the one place that decides how git is run and what reaches it.
Input: repo URLs, branch names and revisions as users typed them, and git
argument vectors. Output: validated values (or ``SourceConfigError`` naming
the problem), text with credentials masked, and the output of git run by
``Git`` (or ``GitFailed``, its stderr already redacted). Callers: every
module of ``llmops.engine.source`` (snapshots, commits, branches,
write-back, push, scaffold, and the object helpers ``gitobjects`` and
``gitcommit``), ``llmops.engine.actuate.branch``, and anything that prints
a URL (``redact``).

How git runs (``Git`` and ``run_git``):

- an argument vector, never a shell; user strings never in an option
  position: URLs travel in the environment (``remote.origin.url``),
  branches pass ``check_branch`` (our rules and ``git check-ref-format``),
  revisions ``check_rev``/``check_expression`` and follow ``--end-of-options``;
- an environment built from scratch by ``environment`` (nothing of the
  caller's ``GIT_*``; no system or global config; no prompts; a private
  ``HOME``), in a local variant and a remote one (batch-mode ssh, proxies,
  only the remote's protocol);
- ``-c`` hardening on every command (``config_args``): hooks and fsmonitor
  off, ``core.symlinks=false``, no submodules, ``protocol.allow=never`` plus
  the one protocol a remote needs, fsck on fetch, no signing, no credential
  helper, no auto-gc in a user's repo;
- no filter driver, textconv or external diff ever runs: llmops never
  checks out, archives or diffs with patches; blobs are read with
  ``cat-file`` (no ``--filters``/``--textconv``), written with
  ``hash-object --stdin`` (no ``--path``: no attributes apply), trees
  compared with ``diff-tree --name-only --no-ext-diff --no-textconv``. The one
  ``git add`` (``scaffold``) runs in a repo created a moment before, whose
  config names no filter;
- in its own process group, with a timeout that kills the whole group;
- no link-local or cloud metadata host in any spelling (``netguard``): refused
  when a URL is parsed, and right before a command that connects (``CONNECTING``)
  the host is resolved and every address checked, then pinned for curl
  (``http.curloptResolve``) so git connects to what was checked (ssh resolves
  again itself: checked, not pinned).

GitPython is not the runner. Its ``Git.execute`` starts from a copy of
``os.environ``, so the caller's ``GIT_DIR``, ``GIT_CONFIG_PARAMETERS`` or
``GIT_SSH_COMMAND`` leak into every command, and on timeout
(``kill_after_timeout``) it kills only the pid and the children it lists
(3.1: ``ps --ppid``, direct children; 3.2: what ``pgrep -P`` finds at that
moment), never the process group, so a helper that re-parented or started
meanwhile survives. Its option denylist has also been
bypassed a dozen times. llmops uses it only where no command runs: parsing
commit headers (``gitobjects``) and reading the user's identity from their
config files (``scaffold``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from llmops.engine import netguard
from llmops.engine import redact as redact_text
from llmops.engine.errors import InvalidInput

MAX_REF_LENGTH = 255
MAX_REV_LENGTH = 256
DEFAULT_TIMEOUT = 120.0
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}
CONNECTING = frozenset({"fetch", "push", "ls-remote", "clone"})
"""The git commands that open a connection to the remote (checked and pinned first)."""
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
ABBREV = re.compile(r"[0-9a-f]{7,64}")
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"[A-Za-z0-9+.-]+::")
_SCP = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)", re.S)
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")
_PASSTHROUGH_ENV = ("SSH_AUTH_SOCK", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "SSL_CERT_FILE",
                    "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")
_HARDENING = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "core.symlinks=false",
              "protocol.allow=never", "submodule.recurse=false",
              "fetch.recurseSubmodules=false", "fetch.fsckObjects=true",
              "gc.autoDetach=false", "credential.helper=", "init.defaultBranch=main",
              "commit.gpgSign=false")


class SourceConfigError(InvalidInput):
    """The repo URL, path, branch or revision is not acceptable; the message says why."""


def redact(text: str) -> str:
    """Mask credentials: ``https://u:tok@h/x`` -> ``https://***@h/x`` (the whole user-info,
    even with several ``@``), then whatever ``llmops.engine.redact`` masks (pairs, bearers)."""
    return redact_text.redact(_USERINFO.sub(r"\1***@", text))


def mask(text: str, secrets: Sequence[str]) -> str:
    """``redact``, and every known secret of the remote masked wherever it appears."""
    text = redact(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ------------------------------------------------------------------ validation


@dataclass(frozen=True, slots=True)
class Remote:
    url: str
    protocol: str
    host: str
    secrets: tuple[str, ...]
    port: int = 0
    """The port git connects to (0 for local repos)."""


def _check_host(host: str, shown: str, allowed: Sequence[str]) -> str:
    host = host.lower()
    try:  # every spelling the C library reads as an address (2852039166, 0xA9FEA9FE, ...)
        ip = netguard.check_literal(host)
    except netguard.BlockedAddress as exc:
        raise SourceConfigError(f"{shown}: {exc} (cloud metadata and the like are never "
                                "a repo)") from None
    if ip is None and not _HOST.fullmatch(host):
        raise SourceConfigError(f"{shown}: {host[:80]!r} is not a valid host name")
    if allowed and host not in {h.lower() for h in allowed}:
        raise SourceConfigError(f"{shown}: host {host} is not in allowed_hosts "
                                f"({', '.join(sorted(allowed))})")
    return host


def parse_url(url: str, *, allowed_hosts: Sequence[str] = (),
              allow_http: bool = False) -> Remote:
    """Validate a repo URL or path against the allow-list; raise ``SourceConfigError``."""
    shown = repr(redact(url)[:200])
    if not url:
        raise SourceConfigError("the repo URL or path is empty")
    if not url.isprintable():
        raise SourceConfigError(f"{shown}: contains a control character or line break")
    if url.startswith("-"):
        raise SourceConfigError(f"{shown}: starts with '-' (git would read it as an option)")
    if _HELPER.match(url):
        raise SourceConfigError(f"{shown}: '<transport>::' URLs (ext::, fd::, ...) run "
                                "programs and are not allowed")
    scheme = SCHEME.match(url)
    local = scheme is None and (":" not in url or "/" in url.split(":", 1)[0])
    if not local and any(ch.isspace() for ch in url):
        raise SourceConfigError(f"{shown}: URLs may not contain whitespace")
    if local:
        if allowed_hosts:
            raise SourceConfigError(f"{shown}: local paths are not allowed when "
                                    "allowed_hosts is set")
        return Remote(str(Path(url).resolve()), "file", "", ())
    if scheme is None:
        return _parse_scp(url, shown, allowed_hosts)
    return _parse_scheme(url, scheme.group(1), shown, allowed_hosts, allow_http)


def _parse_scp(url: str, shown: str, allowed_hosts: Sequence[str]) -> Remote:
    m = _SCP.fullmatch(url)
    user = (m.group("user") or "") if m else ""
    if m is None or user.startswith("-") or m.group("path").startswith("-") \
            or not m.group("path"):
        raise SourceConfigError(f"{shown}: not a valid scp-like URL (user@host:path)")
    host = _check_host(m.group("host"), shown, allowed_hosts)
    return Remote(url, "ssh", host, (), DEFAULT_PORTS["ssh"])


def _parse_scheme(url: str, name: str, shown: str, allowed_hosts: Sequence[str],
                  allow_http: bool) -> Remote:
    if name == "file":
        parts = urlsplit(url)
        if allowed_hosts:
            raise SourceConfigError(f"{shown}: file:// URLs are not allowed when "
                                    "allowed_hosts is set")
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SourceConfigError(f"{shown}: a file:// URL needs an absolute path "
                                    "(file:///path/to/repo)")
        return Remote(url, "file", "", ())
    if name == "http" and not allow_http:
        raise SourceConfigError(f"{shown}: plain http:// sends specs and credentials "
                                "unencrypted; use https:// (or allow_http)")
    if name not in ("https", "ssh", "http"):
        raise SourceConfigError(f"{shown}: scheme {name!r} is not allowed; use https://, "
                                "ssh://, git@host:path, file:// or a local path")
    parts = _split(url, shown)
    if not parts.hostname:
        raise SourceConfigError(f"{shown}: the URL has no host")
    if (parts.username or "").startswith("-"):
        raise SourceConfigError(f"{shown}: the user name may not start with '-'")
    host = _check_host(parts.hostname, shown, allowed_hosts)
    secret = parts.password or (parts.username if name != "ssh" else None) or ""
    secrets = tuple(s for s in {secret, unquote(secret)} if len(s) >= 4)
    return Remote(url, name, host, secrets, parts.port or DEFAULT_PORTS[name])


def _split(url: str, shown: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise SourceConfigError(f"{shown}: {exc}") from None
    return parts


def check_branch(branch: str) -> str:
    """The branch name (``refs/heads/`` stripped) if it is safe and valid; else raise."""
    name = branch.removeprefix("refs/heads/")
    shown = repr(branch[:80])
    problem = ""
    if not name:
        problem = "is empty"
    elif not name.isprintable() or any(ch.isspace() for ch in name):
        problem = "contains whitespace or a control character"
    elif name.startswith("-"):
        problem = "starts with '-' (git would read it as an option)"
    elif ".." in name or "@{" in name:
        problem = "contains '..' or '@{' (a range or reflog expression, not a branch)"
    elif len(name) > MAX_REF_LENGTH:
        problem = f"is longer than {MAX_REF_LENGTH} characters"
    elif name == "HEAD":
        problem = "is HEAD; name the branch"
    if problem:
        raise SourceConfigError(f"branch {shown} {problem}")
    try:  # plain mode reads no repo; `name` cannot start with '-' here
        Git(timeout=30).run("check-ref-format", f"refs/heads/{name}")
    except GitFailed as exc:
        raise SourceConfigError(f"branch {shown} is not a valid branch name "
                                f"(git check-ref-format: {exc.message})") from None
    return name


def check_rev(rev: str) -> str:
    """A full or abbreviated SHA is kept; anything else must be a valid branch name."""
    if ABBREV.fullmatch(rev):
        return rev
    try:
        return "refs/heads/" + check_branch(rev)
    except SourceConfigError as exc:
        raise SourceConfigError(f"revision {rev[:80]!r}: not a commit SHA, and {exc}") from None


def check_expression(rev: str) -> str:
    """A revision expression a user typed (``HEAD~1``, a tag, a SHA) for a local repo:
    refused when git could read it as an option or it cannot be a revision at all."""
    if not rev or rev.startswith("-") or len(rev) > MAX_REV_LENGTH or any(
        c in rev for c in "\0\n\r"
    ):
        raise SourceConfigError(f"{rev[:60]!r} is not a valid revision")
    return rev


# ------------------------------------------------------------------ running git


class GitFailed(Exception):
    """git could not run, timed out (``returncode`` -1) or exited non-zero."""

    def __init__(self, message: str, stderr: str = "", returncode: int = -1, *,
                 verb: str = "", timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.verb = verb
        """The git command that failed (``fetch``, ``cat-file``, ...)."""
        self.stderr = stderr
        self.returncode = returncode
        self.timed_out = timed_out

    def detail(self) -> str:
        lines = [ln.strip() for ln in self.stderr.splitlines()
                 if ln.strip() and not ln.startswith("hint:")]
        lines = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines
        tail = "; ".join(lines[-3:])[:500]
        return f"{self.message}: {tail}" if tail else self.message


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_git(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float,
            stdin: bytes | None = None, pre: Sequence[str] = (),
            secrets: Sequence[str] = ()) -> bytes:
    """Run ``git pre... argv...`` in its own process group; on timeout kill the whole group.

    Failures raise ``GitFailed`` whose stderr is already redacted (``secrets`` masked).
    ``Git`` builds ``env`` and ``pre``; call this directly only with theirs.
    """
    verb = argv[0]
    try:
        proc = subprocess.Popen(["git", *pre, *argv], cwd=cwd, env=dict(env),
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise GitFailed(f"cannot run git ({exc.strerror})", verb=verb) from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        raise GitFailed(f"git {verb} timed out after {timeout:g}s", verb=verb,
                        timed_out=True) from None
    except BaseException:
        _kill(proc)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise GitFailed(f"git {verb} failed (exit {proc.returncode})",
                        mask(err.decode("utf-8", "replace"), secrets), proc.returncode,
                        verb=verb)
    return out


def config_args(remote: Remote | None = None, *, follow_redirects: bool = True) -> list[str]:
    """``-c`` settings for every git run: no hooks, fsmonitor, symlinks or submodules,
    fsck on fetch, no signing; a remote's protocol is the only one allowed (redirects
    off when hosts are pinned); without a remote, no transport and no auto-gc."""
    items = list(_HARDENING)
    if remote is None:
        items.append("gc.auto=0")  # never repack a user's repo behind their back
    else:
        items += [f"protocol.{remote.protocol}.allow=always",
                  "http.followRedirects=" + ("initial" if follow_redirects else "false")]
    return [arg for item in items for arg in ("-c", item)]


def environment(home: Path | None = None, remote: Remote | None = None, *,
                timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
    """A git environment built from scratch: nothing from the caller's GIT_* variables,
    no system or global config, no prompts, a private ``HOME`` (``/dev/null`` when
    none is given). The remote variant adds batch-mode ssh, proxies and CA settings,
    only the remote's protocol, and the URL as ``remote.origin.url`` in the
    environment, never in argv."""
    private = Path(home) if home is not None else Path(os.devnull)
    true = shutil.which("true") or "/bin/true"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
        "HOME": str(private), "XDG_CONFIG_HOME": str(private / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": true, "SSH_ASKPASS": true,
        "SSH_ASKPASS_REQUIRE": "never", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_LITERAL_PATHSPECS": "1",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    if remote is None:
        return env
    wait = max(1, round(timeout))
    env |= {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env |= {
        "GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o ConnectTimeout={wait} "
                           "-o ServerAliveInterval=15 -o ServerAliveCountMax=2",
        "GIT_SSH_VARIANT": "ssh", "GIT_ALLOW_PROTOCOL": remote.protocol,
        "GIT_PROTOCOL_FROM_USER": "0", "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "remote.origin.url", "GIT_CONFIG_VALUE_0": remote.url,
    }
    return env


class Git:
    """git against one repository (``git_dir``; None for commands that need none).

    ``home`` is the private ``HOME`` (and where git runs unless ``cwd`` or
    ``work_tree`` says otherwise); ``remote`` switches to the remote variant of
    the environment; ``index`` is a private ``GIT_INDEX_FILE`` (the user's
    index is never touched); ``timeout`` applies to each command unless a call
    passes its own. Failures raise ``GitFailed``.
    """

    def __init__(self, git_dir: Path | None = None, *, home: Path | None = None,
                 remote: Remote | None = None, timeout: float = DEFAULT_TIMEOUT,
                 cwd: Path | None = None, work_tree: Path | None = None,
                 index: Path | None = None, follow_redirects: bool = True) -> None:
        self.git_dir = git_dir
        self.remote = remote
        self.index = index
        self.timeout = timeout
        self.secrets = remote.secrets if remote is not None else ()
        self.cwd = cwd or work_tree or home or Path("/")
        self.env = environment(home, remote, timeout=timeout)
        if index is not None:
            self.env["GIT_INDEX_FILE"] = str(index)
        where = ["--git-dir", str(git_dir)] if git_dir is not None else []
        if work_tree is not None:
            where += ["--work-tree", str(work_tree)]
        self.pre = [*where, *config_args(remote, follow_redirects=follow_redirects)]

    @classmethod
    def open(cls, repo: Path, scratch: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Git:
        """The repository at ``repo`` (a work tree or a git dir), run from the empty
        directory ``scratch`` (also its ``HOME``) with a private index in it."""
        probe = cls(home=scratch, cwd=repo, timeout=timeout)
        git_dir = probe.text("rev-parse", "--absolute-git-dir").strip()
        return cls(Path(git_dir), home=scratch, timeout=timeout, index=scratch / "index")

    def run(self, *argv: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> bytes:
        """The output of ``git argv...``; ``env`` adds variables (an identity, say)."""
        pre = [*self.pre, *self._pinned(argv[0])] if argv else self.pre
        return run_git(argv, env=self.env | dict(env or {}), cwd=self.cwd,
                       timeout=timeout or self.timeout, stdin=stdin, pre=pre,
                       secrets=self.secrets)

    def without_filters(self) -> Git:
        """This git with every filter driver its repository's config names switched off
        (``filter.<name>.clean|smudge|process`` set empty on the command line, which git
        reads as no filter), for commands that read or write a work tree: a ``clean``,
        ``smudge`` or long-running ``process`` program configured in a specs repo never
        runs. Reading the config runs nothing."""
        try:
            listed = self.run("config", "--null", "--name-only", "--get-regexp",
                              r"^filter\..+\.(clean|smudge|process)$")
        except GitFailed as exc:
            if exc.returncode != 1:  # 1: no such key
                raise
            listed = b""
        names = {key.decode("utf-8", "replace").removeprefix("filter.").rpartition(".")[0]
                 for key in listed.split(b"\0") if key}
        for name in sorted(names):
            for part in ("clean", "smudge", "process"):
                self.pre += ["-c", f"filter.{name}.{part}="]
        return self

    def _pinned(self, verb: str) -> list[str]:
        """Before a command that connects: the remote's host resolved now and every address
        checked (``netguard``); for http(s) those addresses pinned for curl, so git
        connects to what was checked. ssh resolves again itself (checked, not pinned)."""
        remote = self.remote
        if remote is None or verb not in CONNECTING or not remote.host:
            return []
        try:
            addresses = netguard.resolve(remote.host, remote.port)
        except netguard.BlockedAddress as exc:
            raise SourceConfigError(f"{mask(remote.url, remote.secrets)}: {exc}") from None
        except OSError as exc:
            raise GitFailed(f"cannot resolve {remote.host}: {exc}", verb=verb) from None
        if remote.protocol not in ("http", "https") or not addresses:
            return []
        pins = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
        return ["-c", f"http.curloptResolve={remote.host}:{remote.port}:{pins}"]

    def text(self, *argv: str, stdin: bytes | None = None,
             env: Mapping[str, str] | None = None) -> str:
        return self.run(*argv, stdin=stdin, env=env).decode("utf-8", "replace")

    def resolve(self, rev: str) -> str | None:
        """The full SHA of the commit ``rev`` (already checked) names; None if none."""
        try:
            out = self.run("rev-parse", "--verify", "--quiet", "--end-of-options",
                           f"{rev}^{{commit}}")
        except GitFailed:
            return None
        sha = out.decode().strip()
        return sha if SHA.fullmatch(sha) else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is in the history of ``descendant`` (full SHAs)."""
        try:
            self.run("merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant)
        except GitFailed:
            return False
        return True


def init(path: Path, *, bare: bool = False, home: Path | None = None,
         timeout: float = 60.0) -> None:
    """``git init`` a new repository at ``path``: bare and without templates (a
    private mirror), or with a work tree on branch ``main`` (``llmops init``)."""
    argv = ["--bare", "--template="] if bare else ["--initial-branch=main"]
    Git(home=home, timeout=timeout).run("init", "--quiet", *argv, "--end-of-options",
                                        str(path))


def init_mirror(path: Path, *, home: Path, timeout: float = 60.0) -> None:
    """A bare repo at ``path`` unless one is there: made in a ``tmp-*`` sibling and
    renamed into place, so an interrupted run never leaves half a mirror."""
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return
    shutil.rmtree(path, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=path.parent))
    try:
        init(tmp, bare=True, home=home, timeout=timeout)
    except GitFailed:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(path)


def default_branch(url_or_path: str, *, timeout: float = DEFAULT_TIMEOUT,
                   allowed_hosts: Sequence[str] = (), allow_http: bool = False) -> str:
    """The branch a repo's HEAD names (``git ls-remote --symref <repo> HEAD``): what a
    clone would check out. ``GitFailed`` when the repo cannot be read or HEAD names no
    branch (a detached HEAD); ``SourceConfigError`` for a URL that is not allowed."""
    remote = parse_url(url_or_path, allowed_hosts=allowed_hosts, allow_http=allow_http)
    with tempfile.TemporaryDirectory(prefix="llmops-head-") as scratch:
        git = Git(home=Path(scratch), remote=remote, cwd=Path(scratch), timeout=timeout,
                  follow_redirects=not allowed_hosts)
        out = git.text("ls-remote", "--symref", "origin", "HEAD")
    for line in out.splitlines():
        ref, _, name = line.partition("\t")
        if name == "HEAD" and ref.startswith("ref: refs/heads/"):
            return check_branch(ref.removeprefix("ref: refs/heads/"))
    raise GitFailed(f"{mask(remote.url, remote.secrets)}: HEAD names no branch")
