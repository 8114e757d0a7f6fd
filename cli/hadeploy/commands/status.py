"""``hadeploy status``: health of every host, endpoint and the DNS answer."""

from __future__ import annotations

import typer

from hadeploy.commands._common import ConfigOpt, DeploymentOpt, JsonOpt, StateDirOpt, resolve
from hadeploy.errors import ExitCode


def status(
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
    timeout: float = typer.Option(1.0, "--timeout", help="Seconds per probe."),
) -> None:
    """Probe every host and region endpoint; ask the DNS server which region is active.

    Exit code 0 when every region and host is healthy and DNS names exactly one region;
    1 otherwise (an unhealthy region, or a region degraded by a down host).
    Example:  hadeploy status --json | jq .active_region
    """
    from hadeploy import status as st
    from hadeploy.operate import for_deployment

    dep, state = resolve(config, None, deployment, state_dir)
    doc = for_deployment(dep, state).status(timeout)
    if json_out:
        typer.echo(st.dumps(doc))
    else:
        from rich.console import Console

        Console(highlight=False).print(st.render_text(doc))
    if not doc["healthy"] or doc["degraded"]:
        raise typer.Exit(int(ExitCode.FAILED))
