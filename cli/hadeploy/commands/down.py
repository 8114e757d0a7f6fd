"""``hadeploy down``: remove everything the deployment created, and nothing else."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    StateDirOpt,
    YesOpt,
    confirm,
    resolve,
    stderr_console,
)


def down(
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    delete_backups: Annotated[bool, typer.Option(
        "--delete-backups", help="Also delete the deployment's backups (asks separately; "
        "kept by default).")] = False,
) -> None:
    """Remove every container, network, volume and firewall rule of the deployment (on aws: every
    stack).

    Asks for confirmation on a terminal; non-interactive runs need --yes. The audit log in the
    state directory is kept, and so are the backups (lab: the repository volumes and their
    key; aws: the backup vaults and their recovery points, the database's snapshots) unless
    --delete-backups, which asks once more.

    Example:  hadeploy down --yes
    """
    from hadeploy import deploy, targets

    dep, state = resolve(config, None, deployment, state_dir)
    confirm(f"Remove deployment '{dep.name}' ({len(dep.regions)} regions) and its data?", yes)
    if delete_backups:
        confirm(f"Also DELETE every backup of '{dep.name}'? Nothing can be restored afterwards.",
                yes)
    console = stderr_console()
    log = lambda m: console.print(f"[dim]·[/] {m}")  # noqa: E731
    removed = deploy.down(targets.for_deployment(dep, state, log=log), log=log,
                          delete_backups=delete_backups)
    if json_out:
        typer.echo(json.dumps({"deployment": dep.name, "removed": removed}, indent=2))
    else:
        console.print(f"[green]down[/]: removed {len(removed)} object(s) of '{dep.name}'"
                      if removed else f"down: nothing of '{dep.name}' was left to remove")
