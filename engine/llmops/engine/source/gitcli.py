"""Guard rails of the git source: which URLs and refs are allowed, redaction, running git.

Input: repo URLs, branch names and revisions as users typed them, and git
argument vectors. Output: validated values (or ``SourceConfigError`` naming
the problem), text with credentials masked, and the output of git run in a
scrubbed environment with a process-group timeout. Called by
``llmops.engine.source.snapshots`` (and ``redact`` by anything that prints a URL).

Nothing here depends on git's or GitPython's option parsing to stay safe:
values that could be read as options (a leading ``-``), transport helpers
(``ext::``, ``fd::``, any ``<transport>::``), control characters, line
breaks, plain ``http://`` and hosts outside ``allowed_hosts`` are refused
before git runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmops.engine import redact as redact_text
from llmops.engine.errors import InvalidInput

MAX_REF_LENGTH = 255
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
ABBREV = re.compile(r"[0-9a-f]{7,64}")
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"[A-Za-z0-9+.-]+::")
_SCP = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)", re.S)
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")
_PASSTHROUGH_ENV = ("SSH_AUTH_SOCK", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "SSL_CERT_FILE",
                    "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "TMPDIR")
_HARDENING = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "core.symlinks=false",
              "protocol.allow=never", "submodule.recurse=false",
              "fetch.recurseSubmodules=false", "fetch.fsckObjects=true",
              "gc.autoDetach=false", "credential.helper=", "init.defaultBranch=main")


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


def _check_host(host: str, shown: str, allowed: Sequence[str]) -> str:
    host = host.lower()
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if not _HOST.fullmatch(host):
            raise SourceConfigError(f"{shown}: {host[:80]!r} is not a valid host name") from None
    if ip is not None and (ip.is_link_local or ip.is_multicast or ip.is_unspecified):
        raise SourceConfigError(f"{shown}: address {host} is link-local, multicast or "
                                "unspecified (cloud metadata and the like are never a repo)")
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
        m = _SCP.fullmatch(url)
        user = (m.group("user") or "") if m else ""
        if m is None or user.startswith("-") or m.group("path").startswith("-") \
                or not m.group("path"):
            raise SourceConfigError(f"{shown}: not a valid scp-like URL (user@host:path)")
        host = _check_host(m.group("host"), shown, allowed_hosts)
        return Remote(url, "ssh", host, ())
    name = scheme.group(1)
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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise SourceConfigError(f"{shown}: {exc}") from None
    if not parts.hostname:
        raise SourceConfigError(f"{shown}: the URL has no host")
    if (parts.username or "").startswith("-"):
        raise SourceConfigError(f"{shown}: the user name may not start with '-'")
    host = _check_host(parts.hostname, shown, allowed_hosts)
    secret = parts.password or (parts.username if name != "ssh" else None) or ""
    secrets = tuple(s for s in {secret, unquote(secret)} if len(s) >= 4)
    return Remote(url, name, host, secrets)


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
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C"}
    try:  # plain mode reads no repo; `name` cannot start with '-' here
        run_git(["check-ref-format", f"refs/heads/{name}"], env=env, cwd=Path("/"),
                 timeout=30)
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


# ------------------------------------------------------------------ running git


class GitFailed(Exception):
    """git could not run, timed out (``returncode`` -1) or exited non-zero."""

    def __init__(self, message: str, stderr: str = "", returncode: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr
        self.returncode = returncode

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
    """
    verb = argv[0]
    try:
        proc = subprocess.Popen(["git", *pre, *argv], cwd=cwd, env=dict(env),
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise GitFailed(f"cannot run git ({exc.strerror})") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        raise GitFailed(f"git {verb} timed out after {timeout:g}s") from None
    except BaseException:
        _kill(proc)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise GitFailed(f"git {verb} failed (exit {proc.returncode})",
                        mask(err.decode("utf-8", "replace"), secrets), proc.returncode)
    return out


def hardening_config(protocol: str, *, follow_redirects: bool) -> list[str]:
    """``-c`` settings for every git run: no hooks, fsmonitor or submodules, fsck on
    fetch, and only ``protocol`` allowed (redirects off when hosts are pinned)."""
    return [*_HARDENING, f"protocol.{protocol}.allow=always",
            "http.followRedirects=" + ("initial" if follow_redirects else "false")]


def sandbox_env(home: Path, remote: Remote, timeout: float) -> dict[str, str]:
    """A git environment built from scratch: nothing from the caller's GIT_* variables,
    no system or global config, no prompts, batch-mode ssh, only the remote's protocol;
    the URL travels as ``remote.origin.url`` in the environment, never in argv."""
    true = shutil.which("true") or "/bin/true"
    wait = max(1, round(timeout))
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env.update({
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": true, "SSH_ASKPASS": true, "SSH_ASKPASS_REQUIRE": "never",
        "GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o ConnectTimeout={wait} "
                           "-o ServerAliveInterval=15 -o ServerAliveCountMax=2",
        "GIT_SSH_VARIANT": "ssh", "GIT_ALLOW_PROTOCOL": remote.protocol,
        "GIT_PROTOCOL_FROM_USER": "0", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.url",
        "GIT_CONFIG_VALUE_0": remote.url,
    })
    return env
