"""The `llmops` command line: the entry point for pull-request checks and operators.

Each command is a thin shell over the engine: parse options, call one engine
function, print the result. Bad input becomes a clear message and an exit
code, never a traceback; an unexpected internal error prints one line and the
path of a full report.

Exit codes: 0 success, 1 invalid input (or a failed check), 2 usage error,
3 internal error. ``main`` is the one place that maps errors to them: click's
usage errors to 2, each category of ``llmops.engine.errors`` through
``EXIT_CODE_OF`` (today all 1; an error carrying spec issues prints them in
the ``file:line:col: Kind/name: field: message`` form of ``validate``, any
other its message after ``error:``), anything unexpected to 3 with a crash
report. Commands raise; they do not map errors themselves.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import click

from llmops.cli import output
from llmops.engine import errors
from llmops.engine.errors import LlmopsError, SpecError

DISTRIBUTION = "llmops-gitops"
"""The name llmops is installed under (pip, wheels); the command and imports are llmops."""

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

FORMATS = click.Choice(["text", "json", "github"])

EXIT_CODE_OF: dict[type[LlmopsError] | None, int] = {
    errors.InvalidInput: EXIT_INVALID,
    errors.Malformed: EXIT_INVALID,
    errors.NotFound: EXIT_INVALID,
    errors.Conflict: EXIT_INVALID,
    errors.Forbidden: EXIT_INVALID,
    errors.TooLarge: EXIT_INVALID,
    errors.Unavailable: EXIT_INVALID,
    None: EXIT_INVALID,  # an uncategorised LlmopsError: a failed step, its message says why
}
"""The exit code of each engine error category (``llmops.engine.errors.CATEGORIES``)."""


def _version() -> str:
    """The installed distribution's version (``llmops-gitops``: the name ``llmops`` on PyPI
    is someone else's)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"unknown ({DISTRIBUTION} is not installed; run bash .ci/bootstrap)"


LAZY_COMMANDS = {
    "plan": "plan_cmd:plan",
    "render": "render_cmd:render",
    "audit": "audit_cmd:audit",
    "reconcile": "reconcile_cmd:reconcile",
    "status": "reconcile_cmd:status",
    "prune": "reconcile_cmd:prune",
    "daemon": "daemon_cmd:daemon_command",
    "up": "up_cmd:up",
    "serve": "serve_cmd:serve",
    "hydrate": "hydrate_cmd:hydrate",
    "db": "db_cmd:db_group",
    "fetch-model": "fetch_cmd:fetch_model",
    "router": "router_cmd:router",
}
"""Commands defined in their own modules, as ``module:attribute`` under ``llmops.cli``."""


class LazyGroup(click.Group):
    """A group whose commands in ``LAZY_COMMANDS`` are imported only when they are used.

    ``llmops --version`` and ``llmops validate`` then never import the web stack, the
    database drivers or the Kubernetes client; ``llmops --help`` imports every command
    to show its summary.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = LAZY_COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"llmops.cli.{module}"), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="llmops")
def cli() -> None:
    """llmops: GitOps for LLM operations."""


@cli.command("validate")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text for people, json for tools, github for CI annotations.")
def validate_cmd(path: Path, fmt: str) -> None:
    """Check every spec under PATH; exit 0 when all are valid, 1 otherwise."""
    from llmops.engine.spec import validate  # here: --version needs none of it

    try:
        spec_set = validate.load_and_validate(path)
    except SpecError as exc:
        output.print_issues(exc.issues, fmt)
        sys.exit(EXIT_INVALID)
    output.print_valid(spec_set, fmt)


@cli.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
def init_cmd(directory: Path) -> None:
    """Create a new specs repo in DIRECTORY from the template, with a first commit."""
    from llmops.engine.source import scaffold  # git, for this command only

    sha = scaffold.init_repo(directory)
    click.echo(f"created specs repo {directory} at commit {sha[:12]}")
    click.echo("its CI (.github/workflows/llmops.yaml) installs llmops from the repository "
               "variable LLMOPS_REQUIREMENT, a pinned llmops-gitops requirement; see its "
               "README.md, Using the CLI", err=True)


def _report_crash(exc: BaseException) -> str:
    home = Path(os.environ.get("LLMOPS_HOME", ".llmops"))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = "".join(traceback.format_exception(exc))
    for folder in (home / "crash", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"llmops-crash-{stamp}-", suffix=".txt",
                                        dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return name
        except OSError:
            continue
    return "(nowhere: no writable directory)"


def _report(exc: LlmopsError) -> None:
    """One error on stderr: its spec issues, or its message."""
    if isinstance(exc, errors.InvalidInput) and exc.issues:
        output.print_issues(exc.issues, "text", stream=sys.stderr)
    else:
        click.echo(f"error: {exc}", err=True)


def _is_settings_error(exc: Exception) -> bool:
    """A setting that does not validate (``llmops.engine.settings.SettingsError``; looked
    up, not imported, so commands that never read settings stay light)."""
    module = sys.modules.get("llmops.engine.settings")
    return module is not None and isinstance(exc, module.SettingsError)


GC_THRESHOLD = (100_000, 50, 100)
"""The cyclic collector's thresholds for every command. Python's default (700 new
containers) makes it walk the heap hundreds of times while a big repo loads: a third of
the CPU of ``llmops render`` at 10,000 endpoints. Cycles are still collected, later."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: runs the CLI and maps errors to exit codes."""
    gc.set_threshold(*GC_THRESHOLD)
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="llmops",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INVALID)
    except LlmopsError as exc:
        _report(exc)
        sys.exit(EXIT_CODE_OF[errors.category(exc)])
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if _is_settings_error(exc):
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        report = _report_crash(exc)
        click.echo(f"internal error: {type(exc).__name__}; full report in {report}", err=True)
        sys.exit(EXIT_INTERNAL)

