"""``hadeploy up``: build or converge the deployment."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    QuietOpt,
    RegionsOpt,
    StateDirOpt,
    TargetOpt,
    YesOpt,
    confirm,
    resolve,
    stderr_console,
)

if TYPE_CHECKING:
    from hadeploy.config import Deployment
    from hadeploy.state import StateDir
    from hadeploy.targets import ApplyReport

T = TypeVar("T")


def up(
    regions: RegionsOpt = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    converge: bool = typer.Option(
        False, "--converge", help="Run Ansible on every region even when nothing seems changed."),
    drift: bool = typer.Option(
        False, "--drift", help="Compare every running host with the roles first (Ansible's "
        "check mode, as 'plan --drift') and configure the regions that differ."),
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the deployment, or converge it to the desired state (idempotent).

    Applies exactly what 'hadeploy plan' lists: creates what is missing, configures with
    Ansible the regions whose hosts or configuration changed (or that have an unhealthy host),
    and points the app's DNS name at the primary region if it names no region yet. Never moves
    traffic that a failover moved.

    On the aws target the plan is a Pulumi preview of every stack that exists; on a terminal it
    asks before applying, elsewhere it needs --yes (like 'pulumi up').

    Example:  hadeploy up --regions east,west
    """
    dep, state = resolve(config, regions, deployment, state_dir, for_up=True, target=target)
    report = apply(dep, state, converge=converge, yes=yes, quiet=quiet, drift=drift)
    print_report(report, json_out=json_out, quiet=quiet)


def apply(dep: Deployment, state: StateDir, *, converge: bool = False, yes: bool = False,
          quiet: bool = False, drift: bool = False) -> ApplyReport:
    """What 'hadeploy up' does once it knows the deployment: plan and apply under the
    deployment lock, progress on stderr (also what 'hadeploy reconcile' applies with)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from hadeploy import deploy, targets
    from hadeploy.targets import ApplyHooks, Plan

    console = stderr_console(quiet)

    def ask(plan: Plan) -> None:
        for change in plan.changes:
            console.print(f"  [yellow]~[/] {change}")
        confirm(f"Apply these {len(plan.changes)} change(s) to '{dep.name}'?", yes)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet) as progress:
        bar = progress.add_task(f"up {dep.name}", total=None)

        def log(msg: str) -> None:
            progress.console.print(f"[dim]·[/] {msg}")
            progress.update(bar, description=msg)

        def on_task(task: str, n: int) -> None:
            progress.update(bar, description=f"ansible task {n}: {task}")

        target_ = targets.for_deployment(dep, state, log=log)
        if drift:
            log("comparing the running hosts with the roles (Ansible check mode)")
        return _explained(lambda: deploy.up(target_, converge=converge,
                                            hooks=ApplyHooks(log, on_task), confirm=ask,
                                            drift=drift),
                          dep.target.value)


def print_report(report: ApplyReport, *, json_out: bool = False, quiet: bool = False) -> None:
    """'up''s output: the report as JSON on stdout, or the Ansible table and the summary on
    stderr."""
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console = stderr_console(quiet)
    _print_ansible(console, report.to_dict().get("ansible"))
    for line in report.summary():
        console.print(line)


def _explained(action: Callable[[], T], target: str) -> T:
    """Run ``action``; an environment error names the failing doctor check, if one fails."""
    from hadeploy.errors import ExitCode, HadeployError

    try:
        return action()
    except HadeployError as exc:
        if exc.code is ExitCode.ENVIRONMENT:
            from hadeploy.doctor import explain_environment_error

            better = explain_environment_error(target)
            if better:
                exc.hint = better
        raise


def _print_ansible(console: Any, ansible: dict[str, Any] | None) -> None:
    if not ansible:
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=None, show_header=True)
    for col in ("host", "ok", "changed", "failed", "unreachable"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for host, stats in ansible["hosts"].items():
        table.add_row(host, str(stats["ok"]), str(stats["changed"]), str(stats["failed"]),
                      str(stats["unreachable"]))
    console.print(table)
