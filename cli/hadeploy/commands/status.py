"""``hadeploy status``: health of every host, endpoint and the DNS answer."""

from __future__ import annotations

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    StateDirOpt,
    resolve,
    seconds_option,
)
from hadeploy.errors import ExitCode


def status(
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
    timeout: float = typer.Option(1.0, "--timeout", help="Seconds per probe (0.05 to 60)."),
) -> None:
    """Probe every host and region endpoint; ask the DNS server which region is active.

    Exit code 0 when every region and host is healthy and DNS names exactly one region; 1
    otherwise (an unhealthy region, or a region degraded by a down host). Writes nothing.

    Example:  hadeploy status --json | jq .active_region
    """
    from hadeploy import targets
    from hadeploy.status import render_text

    timeout = seconds_option(timeout, name="--timeout", low=0.05, high=60)
    dep, state = resolve(config, None, deployment, state_dir)
    doc = targets.for_deployment(dep, state).runtime().status(timeout)
    if json_out:
        typer.echo(doc.to_json())
    else:
        from rich.console import Console

        Console(highlight=False).print(render_text(doc))
    if not doc.healthy or doc.degraded:
        raise typer.Exit(int(ExitCode.FAILED))
