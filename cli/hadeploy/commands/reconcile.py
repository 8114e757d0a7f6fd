"""``hadeploy reconcile``: pull hadeploy.yaml from a git branch and apply it (GitOps)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hadeploy.commands._common import JsonOpt, StateDirOpt, stderr_console
from hadeploy.errors import ExitCode, HadeployError

if TYPE_CHECKING:
    from hadeploy.reconcile import Outcome, Reconciler, Source


def reconcile(
    repo: Annotated[str | None, typer.Option(
        "--repo", help="The git repository holding hadeploy.yaml: https://, ssh://, "
        "git@host:path or a local path.", show_default=False)] = None,
    branch: Annotated[str, typer.Option("--branch", help="The branch to follow.")] = "main",
    path: Annotated[str, typer.Option(
        "--path", help="The repository directory that holds hadeploy.yaml.")] = ".",
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between two checks of the branch (5 to 86400).")] = 60.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Check and apply once, exit with the apply's exit code.")] = False,
    require_signed: Annotated[bool, typer.Option(
        "--require-signed", help="Apply only a head commit signed by a key of "
        "--allowed-signers (git verify-commit); refuse anything else (exit 3).")] = False,
    allowed_signers: Annotated[Path | None, typer.Option(
        "--allowed-signers", help="With --require-signed: the allowed SSH signers file "
        "(lines '<email> <ssh public key>').", show_default=False)] = None,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
    print_unit: Annotated[bool, typer.Option(
        "--print-unit", help="Print a systemd service that runs this reconciler, and "
        "exit.")] = False,
) -> None:
    """Follow a git branch: apply its hadeploy.yaml whenever it changes (pull-based GitOps).

    Every --interval seconds: fetch the branch (no hook of the repository runs), verify the
    head commit's signature with --require-signed, read <path>/hadeploy.yaml from it and
    apply it exactly as 'hadeploy up --yes' would, under the deployment lock. A revision
    already applied is applied again only when 'plan' shows changes (drift). Like 'up' it
    never moves traffic that a failover moved. A failing apply is retried with exponential
    back-off (up to 10 min); SIGTERM or Ctrl-C stop between two iterations. The revision
    applied is recorded in <state>/<deployment>/reconcile.json ('hadeploy status' shows
    it) and every apply, failure and refusal is audited.

    Exit codes: 2 a bad option, an unknown branch or no hadeploy.yaml at --path; 3 a commit
    refused by --require-signed; 4 another reconciler follows the same branch; 6 git
    missing or the repository unreachable; with --once, the exit code 'up' would have.

    Example:  hadeploy reconcile --repo https://git.example.com/ops/app.git --once
    """
    from hadeploy import reconcile as rc
    from hadeploy.state import state_root

    interval = rc.check_interval(interval)
    source = rc.make_source(repo, branch, path, require_signed=require_signed,
                            allowed_signers=allowed_signers)
    root = state_root(state_dir)
    if print_unit:
        if once:
            raise HadeployError("--print-unit prints the service that runs the loop; "
                                "--once does not go with it", hint="drop --once",
                                code=ExitCode.BAD_INPUT)
        typer.echo(rc.unit(source, root, interval=interval, json_out=json_out), nl=False)
        return
    rc.require_git()
    console = stderr_console()
    reconciler = rc.Reconciler(
        source, root, summary=not json_out,
        log=lambda m: console.print(f"reconcile: {m}", markup=False, soft_wrap=True))
    if once:
        outcome = reconciler.once()
        _show(outcome, source, console, json_out=json_out, indent=2)
        if outcome.code is not ExitCode.OK:
            raise typer.Exit(int(outcome.code))
        return
    last = _loop(reconciler, interval, console, json_out=json_out)
    if last is not None:  # the first check could not fetch the branch or find the config
        raise typer.Exit(int(last.code))


def _loop(reconciler: Reconciler, interval: float, console: Any, *,
          json_out: bool) -> Outcome | None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second signal: stop now (an apply is interrupted)
            raise KeyboardInterrupt
        stop.set()
        console.print(f"reconcile: {signal.Signals(signum).name}: stopping after this "
                      "iteration (send it again to interrupt it)", soft_wrap=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    shown: dict[str, str | None] = {"action": None}

    def report(outcome: Outcome) -> None:
        if outcome.action == "noop" and shown["action"] == "noop" and not json_out:
            return  # "in sync" once, not every interval
        shown["action"] = outcome.action
        _show(outcome, reconciler.source, console, json_out=json_out, indent=None)

    console.print(f"reconcile: following {reconciler.source.describe()} every "
                  f"{interval:g} s", markup=False, soft_wrap=True)
    try:
        last = reconciler.loop(stop, interval, on_outcome=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if last is None:
        console.print("reconcile: stopped")
    return last


def _show(outcome: Outcome, source: Source, console: Any, *, json_out: bool,
          indent: int | None) -> None:
    """An iteration: one JSON document on stdout (one line each in the loop), or lines
    on stderr."""
    from rich.markup import escape

    if json_out:
        typer.echo(json.dumps(outcome.to_dict(source), indent=indent))
    where = escape(source.describe(outcome.revision))
    target = f" → '{outcome.deployment}'" if outcome.deployment else ""
    error = escape(outcome.error or "")
    if outcome.action == "noop":
        line = f"{where}{target}: in sync, nothing to do"
    elif outcome.action in ("applied", "drift"):
        what = "drift corrected" if outcome.action == "drift" else "applied"
        line = f"{where}{target}: {what} ({len(outcome.changes)} change(s), " \
               f"{outcome.seconds:.1f} s)"
    elif outcome.action == "refused":
        if not outcome.new:
            return
        line = f"[red]{where}: REFUSED[/]: {error}"
    else:
        line = (f"[red]{where}{target}: FAILED ({outcome.stage}, exit {int(outcome.code)}, "
                f"attempt {outcome.attempts})[/]: {error}")
    console.print(f"reconcile: {line}", highlight=False, soft_wrap=True)
    if outcome.hint and outcome.action in ("failed", "refused"):
        for hint in outcome.hint.splitlines():
            console.print(f"  fix: {hint}", markup=False, soft_wrap=True)
