"""``hadeploy plan``: validate the desired state and show what ``up`` would change."""

from __future__ import annotations

import json

import typer

from hadeploy.commands._common import ConfigOpt, DeploymentOpt, JsonOpt, StateDirOpt, resolve


def plan(
    config: ConfigOpt = None,
    regions: str | None = typer.Option(None, "--regions", "-r",
                                       help="Comma-separated regions, first is primary."),
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate the desired state and list what 'up' would create or change.

    Read-only: safe on a pull request.  Example:  hadeploy plan --config hadeploy.yaml --json
    """
    from hadeploy.plan import compute

    dep, state = resolve(config, regions, deployment, state_dir, for_up=True)
    doc = compute(dep, state)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console

    out = Console(highlight=False)
    out.print(f"deployment [bold]{dep.name}[/] target {dep.target.value}: "
              f"{len(dep.regions)} region(s), primary {dep.primary.name}")
    for change in doc["changes"]:
        out.print(f"  [green]+[/] {change}" if change.startswith("create")
                  else f"  [yellow]~[/] {change}")
    for note in doc["notes"]:
        out.print(f"  [dim]{note}[/]")
    if not doc["changes"]:
        out.print("  no changes")
