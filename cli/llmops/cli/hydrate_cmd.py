"""`llmops hydrate`: commit an environment's rendered manifests to a branch (Argo CD format).

Input: a specs repo that is a git repo (``PATH``, default ``.``), ``--env``,
``--branch`` (e.g. ``environments/prod``), optionally ``--path`` inside the
branch, ``--repo`` (another local repo to write the branch into; default
the specs repo itself), ``--commit`` (the dry revision; default ``HEAD``)
and ``--message``. Output: at most one commit on the branch, written by
``llmops.engine.source.branches`` (``manifest.yaml``, ``README.md``,
``hydrator.metadata``), and one line on stderr naming it. Push the branch
with ``git push origin <branch>`` (or let CI do it); Argo CD then syncs a
plain Application pointed at it.

The dry commit is rendered from its committed tree (materialised privately
by the source stage), never from the work tree, so uncommitted edits cannot
leak into a branch that names the commit. Exit codes: 0 written or already
up to date, 1 invalid specs or a git failure (reported by ``llmops.cli.main``,
the one place errors become exit codes), 2 an undeclared environment.
Registered on the ``llmops`` group by ``llmops.cli``.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import click

from llmops.engine.source import branches, snapshots
from llmops.engine.spec import validate
from llmops.renderers import render as render_stage

EXIT_USAGE = 2


@click.command("hydrate")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--env", "environment", required=True, metavar="ENV",
              help="Environment of llmops.yaml to render.")
@click.option("--branch", required=True, metavar="BRANCH",
              help="Branch to commit the rendered manifests to (e.g. environments/prod).")
@click.option("--path", "target_path", default="", metavar="DIR",
              help="Directory inside the branch (default: the branch root).")
@click.option("--repo", "target_repo", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Local git repo that holds the branch (default: PATH).")
@click.option("--commit", "revision", default="HEAD", show_default=True, metavar="REV",
              help="Dry commit of the specs repo to render.")
@click.option("--message", default="", help="Subject of the hydrated commit.")
def hydrate(path: Path, environment: str, branch: str, target_path: str,
            target_repo: Path | None, revision: str, message: str) -> None:
    """Render ENV at a commit of PATH and commit it to BRANCH in the hydrator layout."""
    # Spec, git and hydrate errors reach ``llmops.cli.main``, which reports them (exit 1).
    dry = branches.dry_commit(path, revision)
    with tempfile.TemporaryDirectory(prefix="llmops-hydrate-src-") as work:
        source = snapshots.GitSource(str(path.resolve()), "", Path(work))
        spec_set = validate.validate(source.load(source.snapshot_at(dry.sha)))
        if environment not in spec_set.config.environments:
            declared = ", ".join(spec_set.config.environments)
            click.echo(f"error: unknown environment {environment!r} (declared in "
                       f"llmops.yaml: {declared})", err=True)
            sys.exit(EXIT_USAGE)
        # No per-object stamp: the dry commit is named once, in hydrator.metadata.
        objects = render_stage.render_environment(spec_set, environment, revision="")
    command = f"llmops render . --env {shlex.quote(environment)}"
    done = branches.hydrate_branch(target_repo or path, branch, objects, dry,
                                   path=target_path, command=command, message=message)
    where = f"{done.branch}:{done.path or '.'}"
    if done.changed:
        click.echo(f"hydrated {environment} at {dry.sha[:12]} into {where} "
                   f"({len(objects)} objects): commit {done.commit[:12]}", err=True)
    else:
        click.echo(f"{where} already holds these manifests (commit {done.commit[:12]}); "
                   "nothing to commit", err=True)
