"""``hadeploy up``: build or converge the deployment."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

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

T = TypeVar("T")


def up(
    regions: RegionsOpt = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    converge: bool = typer.Option(
        False, "--converge", help="Run Ansible on every region even when nothing seems changed."),
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
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from hadeploy import deploy, targets
    from hadeploy.targets import ApplyHooks, Plan

    dep, state = resolve(config, regions, deployment, state_dir, for_up=True, target=target)
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
        report = _explained(lambda: deploy.up(target_, converge=converge,
                                              hooks=ApplyHooks(log, on_task), confirm=ask),
                            dep.target.value)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
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
