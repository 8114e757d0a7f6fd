"""``hadeploy plan``: validate the desired state and show what ``up`` would change."""

from __future__ import annotations

import json

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    RegionsOpt,
    StateDirOpt,
    TargetOpt,
    resolve,
)


def plan(
    config: ConfigOpt = None,
    regions: RegionsOpt = None,
    target: TargetOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    converge: bool = typer.Option(
        False, "--converge", help="Plan as 'up --converge' would (every region configured)."),
    json_out: JsonOpt = False,
) -> None:
    """Validate the desired state and list what 'up' would change.

    The list is the one 'up' applies: the desired objects diffed against what exists. Read-only
    (no lock, no file written): safe on a pull request.

    Example:  hadeploy plan --config hadeploy.yaml --json
    """
    from hadeploy import targets

    dep, state = resolve(config, regions, deployment, state_dir, for_up=True, target=target)
    result = targets.plan(targets.for_deployment(dep, state), converge=converge)
    doc = {"deployment": dep.name, "target": dep.target.value, "valid": True,
           "regions": [r.name for r in dep.regions], "primary": dep.primary.name,
           "changes": [str(c) for c in result.changes],
           "items": [c.to_dict() for c in result.changes], "notes": result.notes}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console

    out = Console(highlight=False)
    out.print(f"deployment [bold]{dep.name}[/] target {dep.target.value}: "
              f"{len(dep.regions)} region(s), primary {dep.primary.name}")
    marks = {"create": "[green]+[/]", "build": "[green]+[/]", "recreate": "[red]±[/]"}
    for change in result.changes:
        out.print(f"  {marks.get(change.action, '[yellow]~[/]')} {change}")
    for note in result.notes:
        out.print(f"  [dim]{note}[/]")
    if not result.changes:
        out.print("  no changes")
