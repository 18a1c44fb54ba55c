"""`llmops render`: the Kubernetes objects of environments, as YAML or as files.

Input: a specs repo (PATH), ``--env`` (repeatable; without it every environment of
``llmops.yaml``, in its order, loaded and validated once), optionally ``--commit``
and ``--out``. Output: a multi-document YAML stream on stdout (the environments one
after the other), or with ``--out DIR`` one file per object
(``<namespace>/<kind>-<name>.yaml``, cluster-scoped objects under ``_cluster/``;
under ``<env>/`` first when more than one environment renders) that replaces DIR
atomically. Registered on the ``llmops``
group by ``llmops.cli``; also usable as an Argo CD Config Management Plugin
generate command (``llmops render . --env prod``), which passes the revision
in ``ARGOCD_APP_REVISION``.

All or nothing: the whole output is rendered and serialised before a byte is
written. On any error stdout stays empty, the errors go to stderr (spec
errors in the ``file:line:col: Kind/name: field: message`` form of
``llmops validate``) and the exit code is non-zero: 1 for invalid specs or a
spec that does not render, 2 for an undeclared environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from llmops.engine import manifest
from llmops.engine.errors import LlmopsError
from llmops.engine.spec import validate
from llmops.renderers import manifests
from llmops.renderers import render as render_stage

EXIT_USAGE = 2

MARKER_FILE = ".llmops-render"
"""Written into every ``--out`` directory; only such a directory (or an empty one)
is ever replaced, so a mistyped ``--out .`` cannot wipe a working tree."""


class OutputError(LlmopsError):
    """The rendered files could not be written."""


def _marker(environments: list[str], commit: str) -> str:
    return ("# Written by llmops render; replaced as a whole on the next render.\n"
            f"environments: {json.dumps(environments)}\nsourceCommit: {json.dumps(commit)}\n")


def write_tree(out: Path, files: dict[str, str], marker: str) -> None:
    """Replace directory ``out`` with ``files`` (relative path -> text) in one rename.

    The files are written into a sibling temporary directory first; an
    existing ``out`` must be empty or an earlier render output.
    """
    out = Path(os.path.abspath(out))
    if out.exists() and (out.is_symlink() or not out.is_dir()):
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_FILE).is_file():
        raise OutputError(f"refusing to replace {out}: it is not empty and was not written by "
                          f"llmops render (no {MARKER_FILE}); choose another --out")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from exc
    old: Path | None = None
    try:
        os.chmod(tmp, 0o755)
        for rel, text in [(MARKER_FILE, marker), *files.items()]:
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / "tree")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old / "tree", out)
                raise
        else:
            os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc}") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@click.command("render")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--env", "environments", multiple=True, metavar="ENV",
              help="Environment of llmops.yaml to render (repeatable; default: every one).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Write one file per object under this directory (replaced as a whole; "
                   "one subdirectory per environment when several render).")
@click.option("--commit", default=None, metavar="SHA",
              help="Source commit to stamp (default: $ARGOCD_APP_REVISION, else empty).")
def render(path: Path, environments: tuple[str, ...], out: Path | None,
           commit: str | None) -> None:
    """Render the Kubernetes objects of ENV (default: every environment) from PATH."""
    revision = commit if commit is not None else os.environ.get("ARGOCD_APP_REVISION", "")
    # Spec and render errors reach ``llmops.cli.main``, which prints them to stderr and
    # exits 1; stdout is written only once everything has rendered.
    spec_set = validate.load_and_validate(path)
    declared = list(spec_set.config.environments)
    for environment in environments:
        if environment not in declared:
            click.echo(f"error: unknown environment {environment!r} (declared in "
                       f"llmops.yaml: {', '.join(declared)})", err=True)
            sys.exit(EXIT_USAGE)
    names = list(dict.fromkeys(environments)) or declared
    # Only the text is kept while the next environment renders.
    texts: list[str] = []
    files: dict[str, str] = {}
    count = 0
    for name in names:
        objects = render_stage.render_environment(spec_set, name, revision=revision)
        count += len(objects)
        if out is None:
            texts.append(manifest.to_yaml(objects))
        else:
            prefix = f"{name}/" if len(names) > 1 else ""
            files.update((prefix + rel, text) for rel, text in manifests.layout(objects).items())
    if out is None:
        sys.stdout.write("".join(texts))
        sys.stdout.flush()
    else:
        write_tree(out, files, _marker(names, revision))
        click.echo(f"wrote {count} objects of {', '.join(names)} to {out}", err=True)
