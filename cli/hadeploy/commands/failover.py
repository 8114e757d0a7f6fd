"""``hadeploy failover`` and ``hadeploy failback``: move traffic between regions by DNS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    StateDirOpt,
    YesOpt,
    confirm,
    require_built,
    resolve,
    stderr_console,
)
from hadeploy.errors import ExitCode, HadeployError

ReasonOpt = typer.Option("", "--reason", help="Why (recorded in the audit log).")
DryRunOpt = typer.Option(False, "--dry-run",
                         help="Print the plan; take no lock, write nothing, change nothing.")
ForceOpt = typer.Option(False, "--force",
                        help="Skip ONLY the target-health guard (recorded in the audit log).")
DataLossOpt = typer.Option(
    False, "--allow-data-loss", help="When no database answers as the primary (a crash "
    "failover), promote the target even if it may lose more than data.rpo_budget (audited, "
    "with the estimate).")


def failover(
    to: str = typer.Option(..., "--to", help="Region to move traffic to."),
    reason: str = ReasonOpt,
    dry_run: bool = DryRunOpt,
    yes: YesOpt = False,
    force: bool = ForceOpt,
    allow_data_loss: bool = DataLossOpt,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Move the app's DNS name, and the writable database, to another region, safely.

    Prepares a warm/cold target, checks it is healthy by quorum, fences the old primary (it
    refuses writes), changes DNS in one atomic update and verifies the answer on the
    authoritative server. Safe to re-run: a killed run resumes. Asks on a terminal unless
    --yes; never asks when stdin is not a terminal.

    Example:  hadeploy failover --to west --reason "east AZ outage" --yes --json
    """
    if not to.strip():
        raise HadeployError("--to is empty", hint="name the region to move traffic to, e.g. "
                            "--to west (an unset variable in a script?)",
                            code=ExitCode.BAD_INPUT)
    _run(FailoverArgs(to, reason or "manual failover", dry_run, yes, force, allow_data_loss,
                      json_out), config, deployment, state_dir, "failover")


def failback(
    reason: str = ReasonOpt,
    dry_run: bool = DryRunOpt,
    yes: YesOpt = False,
    force: bool = ForceOpt,
    allow_data_loss: bool = DataLossOpt,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Move traffic and the database back to the configured primary region (as failover does).

    Example:  hadeploy failback --reason "east repaired" --yes
    """
    _run(FailoverArgs(None, reason or "manual failback", dry_run, yes, force, allow_data_loss,
                      json_out), config, deployment, state_dir, "failback")


@dataclass(frozen=True)
class FailoverArgs:
    to: str | None
    reason: str
    dry_run: bool
    yes: bool
    force: bool
    allow_data_loss: bool
    json_out: bool


def _run(args: FailoverArgs, config: Path | None, deployment: str | None,
         state_dir: Path | None, operation: str) -> None:
    from hadeploy import targets
    from hadeploy.failover import FailoverContext, FailoverRequest
    from hadeploy.failover import failover as do_failover

    dep, state = resolve(config, None, deployment, state_dir)
    to = args.to or dep.primary.name  # failback: back to the configured primary
    require_built(dep, state)
    console = stderr_console()
    request = FailoverRequest(to=to, reason=args.reason, force=args.force,
                              dry_run=args.dry_run, allow_data_loss=args.allow_data_loss,
                              operation="failback" if operation == "failback" else "failover")
    try:
        ctx = FailoverContext.of(
            dep, state, targets.for_deployment(dep, state).runtime(),
            log=lambda m: console.print(f"[dim]·[/] {m}"),
            confirm=lambda q: confirm(q, args.yes, proceed_without_tty=True))
        out = do_failover(ctx, request)
    except HadeployError as exc:
        if args.json_out:
            typer.echo(json.dumps({"result": "refused" if exc.code is ExitCode.REFUSED
                                   else "failed", "to": to[:64], "error": exc.message,
                                   "exit_code": int(exc.code)}, indent=2))
        raise
    if args.json_out:
        typer.echo(json.dumps(out.to_dict(), indent=2))
    else:
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in out.phases.items())
        console.print(f"[green]{operation}[/]: {out.result} — {out.from_region or '-'} → "
                      f"{out.to_region} ({phases})")
