"""`llmops init`: a new specs repo from the bundled template, as a git repo with one commit.

Input: a destination directory. Output: the directory, populated and
committed on branch ``main``; ``init_repo`` returns the commit's SHA. Called
by the CLI (`init`, `up`) and by tests that need a realistic repo.

git runs through ``gitcli.Git`` like everywhere else (no system or global
config, none of the caller's ``GIT_*`` variables, hooks off, ``--no-verify``,
never signed). The repo's config gets ``core.hooksPath=/dev/null``. The
commit is authored by the user's own identity, read with GitPython from
their git config files (and ``GIT_AUTHOR_*``/``GIT_COMMITTER_*``, as git
would); only when their config names none does the repo get the identity
``llmops <llmops@localhost>`` in its own config.
"""

from __future__ import annotations

import importlib.resources
import shutil
import tempfile
from pathlib import Path

import git as gitpython

from llmops.engine.errors import LlmopsError
from llmops.engine.source import gitcli

TEMPLATE_NAME = "specs_repo_template"
IDENTITY = ("llmops", "llmops@localhost")


def template_dir() -> Path:
    """The bundled template: inside the installed package, or at the source tree's root."""
    packaged = Path(str(importlib.resources.files("llmops.engine"))) / TEMPLATE_NAME
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[4] / TEMPLATE_NAME
    if source.is_dir():
        return source
    raise LlmopsError(f"the bundled {TEMPLATE_NAME} is missing from this installation")


def init_repo(dest: str | Path, message: str = "Initial specs from the llmops template") -> str:
    """Copy the template into ``dest`` (absent or empty), ``git init`` it, commit; return SHA."""
    target = Path(dest)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LlmopsError(f"{target}: exists and is not an empty directory")
    shutil.copytree(template_dir(), target, dirs_exist_ok=True, symlinks=False)
    target = target.resolve()
    with tempfile.TemporaryDirectory(prefix="llmops-init-") as home:
        try:
            gitcli.init(target, home=Path(home))
            git = gitcli.Git(target / ".git", home=Path(home), work_tree=target)
            git.run("config", "core.hooksPath", "/dev/null")
            if not _has_identity(target):
                git.run("config", "user.name", IDENTITY[0])
                git.run("config", "user.email", IDENTITY[1])
            git.run("add", "--all")
            git.run("commit", "--quiet", "--no-verify", "--no-gpg-sign", "--file=-",
                    stdin=message.encode("utf-8"), env=_identity(target))
            return git.text("rev-parse", "--verify", "HEAD^{commit}").strip()
        except gitcli.GitFailed as exc:
            raise LlmopsError(f"{target}: cannot create the specs repo: "
                              f"{exc.detail()}") from None


def _config(target: Path) -> gitpython.GitConfigParser:
    """The user's git config as git would read it for ``target`` (system, global, repo)."""
    return gitpython.Repo(target).config_reader()


def _has_identity(target: Path) -> bool:
    reader = _config(target)
    return bool(reader.get_value("user", "email", default="")) and bool(
        reader.get_value("user", "name", default="")
    )


def _identity(target: Path) -> dict[str, str]:
    """The author and committer git would use: ``GIT_*`` variables, else the config."""
    reader = _config(target)
    author = gitpython.Actor.author(reader)
    committer = gitpython.Actor.committer(reader)
    return {"GIT_AUTHOR_NAME": author.name or "", "GIT_AUTHOR_EMAIL": author.email or "",
            "GIT_COMMITTER_NAME": committer.name or "",
            "GIT_COMMITTER_EMAIL": committer.email or ""}
