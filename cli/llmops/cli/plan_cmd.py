"""`llmops plan`: what a change to a specs repo would do, per environment, for a review.

Reads two revisions of the specs repo at PATH (the base, a commit, read from
git objects; the head, a commit likewise or the working tree as it is; a file
the two share is read and parsed once), validates both, and prints the plan
``llmops.engine.plan.planner.build_plan`` makes: the semantic summary per spec, policy
verdicts, the GPU cost delta and the object diffs, as text (terminal),
Markdown (a pull-request comment) or JSON (tools; the same facts as
``Plan.as_dict``). The object changes and verdicts per environment are the
``ChangeSet`` of ``llmops.engine.plan.decide``, the decision the reconciler
acts on; this module only prints. Registered on the ``llmops`` group in
``llmops.cli``.

Exit codes, as ``terraform plan``: 0 success (with or without changes), 1 an
error or a policy deny, 2 changes present when ``--detailed-exitcode`` is
given (0 then means no changes).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click

from llmops.cli import output
from llmops.engine.errors import SpecError
from llmops.engine.plan import changeset, cost, diff, govern, planner
from llmops.engine.source import commits
from llmops.engine.spec import loader, validate
from llmops.engine.spec.validate import SpecSet

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2

MARKDOWN_BUDGET = 60_000  # GitHub caps a comment at 65,536 characters
SYMBOL = {changeset.Action.CREATED: "+", changeset.Action.CONFIGURED: "~",
          changeset.Action.DELETED: "-", changeset.Action.UNCHANGED: " "}
WORK_TREE = "working tree"


# --------------------------------------------------------------------------- text


def _short(commit: str) -> str:
    return commit[:12] if commit else WORK_TREE


def _counts(env: planner.EnvironmentPlan) -> str:
    c = env.changes.counts()
    return (f"{c[changeset.Action.CREATED]} to create, {c[changeset.Action.CONFIGURED]} to update, "
            f"{c[changeset.Action.DELETED]} to delete, {c[changeset.Action.UNCHANGED]} unchanged")


def _money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _cost_rows(p: planner.Plan) -> list[cost.CostDelta]:
    return [r for r in p.cost if r.changed]


def render_text(p: planner.Plan, out: TextIO) -> None:
    w = out.write
    w(f"llmops plan: base {_short(p.base_revision)} -> head {_short(p.head_revision)}\n")
    if not p.has_changes:
        w("\nNo changes. The head matches the base in every planned environment.\n")
    if p.global_specs:
        w("\nGlobal specs\n")
        for change in p.global_specs:
            w(f"  {SYMBOL[change.action]} {change.summary}\n")
    for env in p.environments:
        w(f"\nEnvironment {env.environment}: {_counts(env)}\n")
        for change in env.specs:
            w(f"  {SYMBOL[change.action]} {change.summary}\n")
        if env.verdicts and not env.has_changes and not env.denied:
            w(f"  Policy: {len(env.verdicts)} allowed\n")
        elif env.verdicts:
            w("  Policy:\n")
            for v in sorted(env.verdicts, key=lambda v: not v.denied):
                label = "DENY " if v.denied else "allow"
                w(f"    {label} {v.rule}: {v.target}: {v.reason}\n")
            if env.denied and not env.blocking:
                w(f"  (nothing changes in {env.environment}, so this plan is not blocked "
                  f"there; the next change to {env.environment} must satisfy them)\n")
        if env.changes.has_changes:
            w("  Objects:\n")
            for entry in env.changes.changed:
                w(f"    {SYMBOL[entry.action]} {entry.key} ({entry.action})\n")
                for field in entry.changes:
                    w(f"        {field.describe()}\n")
                    for line in field.text_diff():
                        w(f"          {line}\n")
    rows = _cost_rows(p)
    if rows:
        w(f"\nGPU cost per month ({cost.HOURS_PER_MONTH} h; endpoints at replicas.max, "
          "'min' is the change at replicas.min; training jobs count all month):\n")
        for r in rows:
            w(f"  {r.team} in {r.environment}: GPUs {r.base.gpus_max} -> {r.head.gpus_max} "
              f"({r.gpus_max_delta:+d}; min {r.gpus_min_delta:+d}), "
              f"cost/month {_money(r.base.monthly_max)} -> {_money(r.head.monthly_max)} "
              f"({_money(r.monthly_max_delta, True)})\n")
    denied = p.denied
    if denied:
        w(f"\nPlan failed: {len(denied)} policy denial{'s' * (len(denied) != 1)}.\n")
    elif p.has_changes:
        w("\nPlan: changes present, all policies allow them"
          + (" (denials where nothing changes are shown above)" if any(
              e.denied for e in p.environments) else "") + ".\n")


# --------------------------------------------------------------------------- markdown


def _escape(text: str) -> str:
    """Neutralise HTML (``&``, ``<``) in text from specs; ``->`` stays readable."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _cell(text: str) -> str:
    return _escape(text).replace("|", "\\|").replace("\n", " ")


def _fence(body: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _verdict_badge(env: planner.EnvironmentPlan) -> str:
    if not env.verdicts:
        return "no rules"
    denied = len(env.denied)
    if denied:
        return f"❌ {denied} denied" if env.blocking else f"⚠️ {denied} denied, no change"
    return f"✅ {len(env.verdicts)} allowed"


def _verdict_table(verdicts: list[govern.Verdict]) -> str:
    rows = "".join(
        f"| {'❌ **deny**' if v.denied else '✅ allow'} | {v.rule} | {_cell(v.target)} | "
        f"{_cell(v.reason)} |\n" for v in verdicts)
    return f"| Decision | Rule | Target | Reason |\n|---|---|---|---|\n{rows}"


def _verdict_tables(env: planner.EnvironmentPlan) -> str:
    """Denials in the open; allowed verdicts folded (they are the common case)."""
    denied = [v for v in env.verdicts if v.denied]
    allowed = [v for v in env.verdicts if not v.denied]
    text = f"\n**Policy: {len(denied)} denied**\n\n{_verdict_table(denied)}" if denied else ""
    if allowed:
        text += (f"\n<details><summary>Policy: {len(allowed)} allowed</summary>\n\n"
                 f"{_verdict_table(allowed)}\n</details>\n")
    return text


def _md_summary(p: planner.Plan) -> str:
    """The headline and one row of counts per environment."""
    status = ("❌ **policy denied**" if p.denied else
              "**changes present**" if p.has_changes else "**no changes**")
    text = (f"## llmops plan\n\n`{_short(p.base_revision)}` → `{_short(p.head_revision)}`: "
            f"{status}\n\n| Environment | Create | Update | Delete | Unchanged | Policy |\n"
            "|---|---:|---:|---:|---:|---|\n")
    for env in p.environments:
        c = env.changes.counts()
        text += (f"| {env.environment} | {c[changeset.Action.CREATED]} | "
                 f"{c[changeset.Action.CONFIGURED]} | {c[changeset.Action.DELETED]} | "
                 f"{c[changeset.Action.UNCHANGED]} | {_verdict_badge(env)} |\n")
    return text


def _md_spec_lines(changes: Iterable[planner.SpecChange]) -> str:
    return "".join(f"- `{SYMBOL[c.action]}` **{_cell(c.title)}**: "
                   f"{_cell('; '.join(c.details))}\n" for c in changes)


def _md_specs(p: planner.Plan) -> str:
    """Global spec changes, then each environment's spec changes and verdicts."""
    text = f"\n### Global specs\n\n{_md_spec_lines(p.global_specs)}" if p.global_specs else ""
    for env in p.environments:
        if not env.has_changes and not env.denied:
            continue
        text += f"\n### {env.environment}\n\n"
        if env.specs:
            text += _md_spec_lines(env.specs)
        else:
            text += ("No spec changes; rendered objects differ.\n" if env.has_changes
                     else "No changes, so the denials below do not block this plan; the next "
                          f"change to {env.environment} must satisfy them.\n")
        text += _verdict_tables(env)
    return text


def _md_cost(p: planner.Plan) -> str:
    rows = _cost_rows(p)
    if not rows:
        return ""
    return (f"\n### GPU cost delta\n\nPer month ({cost.HOURS_PER_MONTH} h). GPUs count "
            "endpoints at replicas.max (min in its own column) plus training jobs; cost is at "
            "replicas.max and the head's price per GPU-hour.\n\n"
            "| Team | Environment | GPUs (max) | Δ | Δ at min | Cost/month | Δ cost |\n"
            "|---|---|---:|---:|---:|---:|---:|\n" + "".join(
                f"| {r.team} | {r.environment} | {r.base.gpus_max} → {r.head.gpus_max} | "
                f"{r.gpus_max_delta:+d} | {r.gpus_min_delta:+d} | "
                f"{_money(r.base.monthly_max)} → {_money(r.head.monthly_max)} | "
                f"{_money(r.monthly_max_delta, True)} |\n" for r in rows))


def _md_diffs(p: planner.Plan, used: int) -> str:
    """Object diffs, folded, as many as fit the comment after ``used`` characters."""
    diffs: list[str] = []
    omitted = 0
    for env in p.environments:
        for entry in env.changes.changed:
            body = diff.unified(entry)
            fence = _fence(body)
            block = (f"<details><summary>{SYMBOL[entry.action]} {env.environment}: "
                     f"{_escape(str(entry.key))} ({entry.action})</summary>\n\n"
                     f"{fence}diff\n{body}\n{fence}\n\n</details>\n")
            if used + sum(len(d) for d in diffs) + len(block) > MARKDOWN_BUDGET:
                omitted += 1
                continue
            diffs.append(block)
    if not diffs and not omitted:
        return ""
    text = "\n### Object diffs\n\n" + "".join(diffs)
    if omitted:
        text += (f"\n{omitted} more object diff{'s' * (omitted != 1)} omitted to fit a "
                 "comment; run `llmops plan --format json` for all of them.\n")
    return text


def render_markdown(p: planner.Plan, out: TextIO) -> None:
    """A pull-request comment: counts, spec changes, verdicts, cost, then object diffs."""
    text = _md_summary(p) + _md_specs(p) + _md_cost(p)
    out.write(text + _md_diffs(p, len(text)))


def render_json(p: planner.Plan, out: TextIO) -> None:
    json.dump(p.as_dict(), out, indent=2, sort_keys=True, default=str)
    out.write("\n")


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}


# --------------------------------------------------------------------------- command


def _validated(loaded: loader.Loaded, what: str) -> SpecSet:
    try:
        return validate.validate(loaded)
    except SpecError as exc:
        click.echo(f"{what} is invalid:", err=True)
        output.print_issues(exc.issues, "text", stream=sys.stderr)
        sys.exit(EXIT_FAILED)


def _revision(path: Path, rev: str | None, blobs: dict[str, bytes]) -> tuple[loader.Loaded, str]:
    """The loaded specs at ``rev`` (None: the working tree) and its commit SHA ("" for the
    working tree). Commits are read from git objects; ``blobs`` is shared by both sides."""
    if rev is None:
        return loader.load_repo(path), ""
    revision, loaded = commits.load(path, rev, blobs=blobs)
    return loaded, revision


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 timestamp",
                                 param_hint="--now") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("plan")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--base", "base_rev", metavar="REV",
              help="Commit to compare against. Default: HEAD (when the head is the working tree).")
@click.option("--head", "head_rev", metavar="REV",
              help="Commit to plan. Default: the working tree as it is, uncommitted files "
                   "included.")
@click.option("--env", "envs", multiple=True, metavar="ENV",
              help="Plan only this environment (repeatable). Default: every environment.")
@click.option("--format", "fmt", type=click.Choice(list(RENDERERS)), default="text",
              show_default=True, help="text for a terminal, markdown for a PR comment, "
                                      "json for tools.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes (0 no changes, 1 error or policy deny).")
@click.option("--now", "now_text", metavar="TIMESTAMP",
              help="Evaluate change windows at this ISO 8601 time (default: now; no zone = UTC).")
def plan(path: Path, base_rev: str | None, head_rev: str | None, envs: tuple[str, ...],
             fmt: str, detailed_exitcode: bool, now_text: str | None) -> None:
    """Show what the specs at PATH would change against a base commit, per environment.

    Prints the changes per spec and per Kubernetes object, the policy
    verdicts and the GPU cost delta. Exit 0 on success, 1 on an error or a
    policy deny, 2 with --detailed-exitcode when changes are present.
    """
    now = _parse_now(now_text)
    if base_rev is None:
        if head_rev is not None:
            raise click.UsageError("--head needs --base")
        base_rev = "HEAD"
    if not path.is_dir():
        raise click.BadParameter(f"{path} is not a directory", param_hint="PATH")
    blobs: dict[str, bytes] = {}
    base_loaded, base_revision = _revision(path, base_rev, blobs)
    base = _validated(base_loaded, f"the base revision {base_rev} ({base_revision[:12]})")
    head_loaded, head_revision = _revision(path, head_rev, blobs)
    head = _validated(head_loaded, f"the head revision {head_rev} ({head_revision[:12]})"
                      if head_rev else f"the {WORK_TREE} {path}")
    result = planner.build_plan(base, head, list(envs) or None, now,
                             base_revision=base_revision, head_revision=head_revision)
    RENDERERS[fmt](result, sys.stdout)
    sys.stdout.flush()
    if result.denied:
        sys.exit(EXIT_FAILED)
    if detailed_exitcode and result.has_changes:
        sys.exit(EXIT_CHANGES)
    sys.exit(EXIT_OK)
