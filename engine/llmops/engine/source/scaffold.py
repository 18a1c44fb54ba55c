"""`llmops init`: a new specs repo from the bundled template, as a git repo with one commit.

Input: a destination directory. Output: the directory, populated and committed.
Called by the CLI (`init`, `up`) and by tests that need a realistic repo.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

import git

from llmops.engine.errors import LlmopsError

TEMPLATE_NAME = "specs_repo_template"


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
    repo = git.Repo.init(target, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("core", "hooksPath", "/dev/null")
        if not _has_identity(repo):
            cfg.set_value("user", "name", "llmops")
            cfg.set_value("user", "email", "llmops@localhost")
    repo.git.add(A=True)
    repo.git.commit(m=message, no_verify=True)
    return str(repo.head.commit.hexsha)


def _has_identity(repo: git.Repo) -> bool:
    reader = repo.config_reader()
    return bool(reader.get_value("user", "email", default="")) and bool(
        reader.get_value("user", "name", default="")
    )
