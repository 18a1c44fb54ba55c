"""`llmops up`: the embedded default in one command, quiet by default.

Role: a specs repo from the template under LLMOPS_HOME (unless ``--repo``
names one), SQLite under LLMOPS_HOME, each environment's actuator from the
repo's ``llmops.yaml`` (the template's: ``hydrate`` into
LLMOPS_HOME/rendered), a first pass, then the daemon and the REST API on
localhost following that same repo, so the API's writes (rollback, conclude,
promote) commit to the repo the daemon reconciles. Input: settings and the
options. Output: one line per environment and pass that changed something
(a blocked environment as one short line with the reason and, for a change
window, when it next opens), where everything is, and a token file per role
of the repo's RBAC policy. Warnings only, unless ``-v`` (INFO) or ``-vv``
(DEBUG). Caller: the ``llmops`` group registers ``up``; the daemon parts
come from ``llmops.cli.daemon_cmd``.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import click
import uvicorn
from pydantic import SecretStr

from llmops.api import peer, tokens
from llmops.api.app import create_app
from llmops.cli import daemon_cmd
from llmops.engine import settings
from llmops.engine.run import daemon
from llmops.engine.run.reconciler import PassResult
from llmops.engine.service import access, compose
from llmops.engine.settings import Settings
from llmops.engine.source import scaffold
from llmops.engine.store import catalog

TOKEN_DAYS = 30
SHORT = 200
"""Characters of a failed or blocked environment's reason shown on its one line."""


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Alembic says what it migrates at INFO on every start: detail, not news.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def describe(r: PassResult) -> str:
    """One line for one environment's pass: result, revision, counts or the reason."""
    head = f"{r.environment}: {r.result.value} at {r.revision[:12] or '-'}"
    if r.ok:
        c = r.counts
        done = [f"{n} {name}" for name, n in (("created", c.created),
                ("configured", c.configured), ("deleted", c.deleted)) if n]
        return head + (f" ({', '.join(done)})" if done else "")
    reason = (r.message.splitlines() or [""])[0]
    if len(reason) > SHORT:
        reason = reason[:SHORT - 3].rstrip() + "..."
    return f"{head} ({r.reason}: {reason})"


class Printer:
    """Prints a pass's results, each environment only when its line changed."""

    def __init__(self) -> None:
        self.shown: dict[str, tuple[str, str, str]] = {}

    def __call__(self, results: list[PassResult]) -> None:
        for r in results:
            seen = (r.result.value, r.revision, r.reason)
            if r.result.value == "noop" and r.environment in self.shown:
                continue
            if self.shown.get(r.environment) != seen:
                self.shown[r.environment] = seen
                click.echo(describe(r))


def _specs_repo(cfg: Settings, repo: str) -> str:
    """The repo to follow: ``--repo``, the configured one, or the template under the home."""
    if repo:
        return repo if "://" in repo or not Path(repo).is_dir() else str(Path(repo).resolve())
    if cfg.git.repo:
        return cfg.git.repo
    specs_dir = (cfg.home / "specs").resolve()
    if not (specs_dir / ".git").is_dir():
        scaffold.init_repo(specs_dir)
        click.echo(f"created specs repo {specs_dir} from the template")
    return str(specs_dir)


def write_tokens(cfg: Settings, store: catalog.Db) -> dict[str, Path]:
    """A token file per role of the repo's RBAC (mode 0600 under LLMOPS_HOME/tokens/, 0700),
    for the local user as a member of every team the repo names; ``api-token`` is the
    admin one. With no JWT secret configured, a fresh one for this run."""
    if cfg.api.jwt_secret is None:
        cfg.api.jwt_secret = SecretStr(secrets.token_urlsafe(32))
    teams = sorted({team for entry in catalog.list_entries(store)
                    if (team := access.owner_team(store, entry)) != access.UNOWNED})
    roles = sorted(catalog.roles(store)) or ["admin"]
    folder = cfg.home / "tokens"
    private_home(folder)
    written: dict[str, Path] = {}
    # the API refuses a token without the issuer/audience it is configured to expect
    audience = {k: v for k, v in (("iss", cfg.api.jwt_issuer),
                                  ("aud", cfg.api.jwt_audience)) if v}
    for role in roles:
        claims = {"sub": f"local:{getpass.getuser()}", "roles": [role], "teams": teams,
                  "exp": int(time.time()) + TOKEN_DAYS * 86400, **audience}
        written[role] = _write_secret(folder / role, tokens.encode(
            claims, cfg.api.jwt_secret.get_secret_value()))
    if "admin" in written:
        _write_secret(cfg.home / "api-token", written["admin"].read_text().strip())
    return written


def private_home(folder: Path) -> None:
    """``folder`` (LLMOPS_HOME, its ``tokens/``) made if missing, and 0700 either way."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as err:
        raise click.ClickException(f"cannot make {folder} private (0700): "
                                   f"{err.strerror}") from err


def _write_secret(path: Path, text: str) -> Path:
    """``text`` in a new 0600 file renamed onto ``path``: never a pre-existing file's
    mode, never through a symlink planted at ``path`` (rename replaces the link)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _start_api(services: compose.Services, loop: daemon.Daemon,
               port: int) -> tuple[uvicorn.Server, int]:
    """The REST API in a background thread, its trigger waking this process' daemon."""
    cfg = services.settings
    app = create_app(services, trigger=loop.trigger)
    server = uvicorn.Server(peer.server_config(app, cfg.api, host=cfg.api.host, port=port,
                                               access_log=False))
    thread = threading.Thread(target=server.run, name="llmops-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise click.ClickException(f"the API could not listen on {cfg.api.host}:{port}")
        time.sleep(0.05)
    return server, int(server.servers[0].sockets[0].getsockname()[1])


def _where(cfg: Settings, repo: str, port: int, *, once: bool) -> None:
    """Where things are; with ``once`` only what outlives the command."""
    shown = repo if "://" in repo else Path(repo).resolve()
    follows = "" if once else "   (edit, commit: the daemon picks it up)"
    click.echo(f"""
specs repo      {shown}{follows}
rendered        {cfg.hydrate_dir.resolve()}/<env>/   (hydrate actuator)
state           {cfg.effective_database_url}""")
    if not once:
        click.echo(f"metrics         http://127.0.0.1:{port}/metrics")
    click.echo(f"""status          llmops status    audit: llmops audit verify    (from any \
folder below {cfg.home.resolve().parent}, or with LLMOPS_HOME={cfg.home.resolve()})""")


def _tell_tokens(cfg: Settings, base: str, written: dict[str, Path]) -> None:
    folder = cfg.home.resolve() / "tokens"
    click.echo(f"API             {base}/llm-ops/v1/reconcile/status   (docs: "
               f"{base}/llm-ops/v1/docs)")
    click.echo(f"Dashboard       {base}/   (sign in with one of the API tokens)")
    click.echo(f"API tokens      {folder}/{{{','.join(written)}}}   (one per role of the "
               "repo's Policy rbac.roles)")
    click.echo(f"                curl -H \"Authorization: Bearer $(cat {folder}/"
               f"{next(iter(written))})\" {base}/llm-ops/v1/reconcile/status")


@click.command("up")
@click.option("--repo", default="", help="A specs repo to follow (default: LLMOPS_GIT__REPO, "
              "else a new one from the template under LLMOPS_HOME/specs).")
@click.option("--metrics-port", type=int, default=0, show_default=True,
              help="0 picks a free port.")
@click.option("--api-port", type=int, default=None,
              help="Default: LLMOPS_API__PORT or 8080; 0 picks a free port.")
@click.option("--once", is_flag=True, help="Stop after the first pass (for scripts).")
@click.option("-v", "--verbose", count=True, help="-v: INFO logs; -vv: DEBUG.")
def up(repo: str, metrics_port: int, api_port: int | None, once: bool, verbose: int) -> None:
    """Everything on the embedded default: template repo, SQLite, hydrate, daemon and API."""
    _logging(verbose)
    cfg = settings.load()
    private_home(cfg.home)  # tokens, the database and the mirrors' credentials live here
    cfg.git.repo = _specs_repo(cfg, repo)  # the API's writes go to the repo it follows
    services = compose.services(cfg)
    loop, port = daemon_cmd.build(services, cfg.git.repo, "", (), None, metrics_port,
                                  report=Printer())
    if not once:  # the API first: a taken port fails before any pass runs
        server, bound = _start_api(services, loop,
                                   cfg.api.port if api_port is None else api_port)
    if loop.run_once() is None:
        click.echo("another llmops daemon holds the leader lease on this store; standing by")
    _where(cfg, cfg.git.repo, port, once=once)
    if once:
        loop.release()
        return
    written = write_tokens(cfg, services.store)  # one per role of the Policy just read
    _tell_tokens(cfg, f"http://{cfg.api.host}:{bound}", written)
    click.echo("reconciling every change; Ctrl-C to stop")
    try:
        loop.run()
    finally:
        server.should_exit = True
