"""``hadeploy up``: build or converge the deployment."""

from __future__ import annotations

import json

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    QuietOpt,
    StateDirOpt,
    YesOpt,
    confirm,
    resolve,
    stderr_console,
)


def up(
    regions: str | None = typer.Option(
        None, "--regions", "-r",
        help="Comma-separated regions, the first is primary (lab defaults without a config)."),
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    converge: bool = typer.Option(
        False, "--converge", help="Run Ansible even when nothing seems to have changed."),
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the deployment, or converge it to the desired state (idempotent).

    Creates what is missing, configures the hosts with Ansible when something changed (or
    a host is unhealthy), and points the app's DNS name at the primary region if it points
    nowhere yet. Never moves traffic that a failover moved.

    On the aws target: a Pulumi preview of every stack first, then confirmation on a
    terminal unless --yes (non-interactive runs need --yes), like 'pulumi up'.

    Example:  hadeploy up --regions east,west
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from hadeploy.deploy import require_target_available
    from hadeploy.deploy import up as do_up

    dep, state = resolve(config, regions, deployment, state_dir, for_up=True)
    console = stderr_console(quiet)
    if dep.target.value == "aws":
        from hadeploy.deploy import up_aws

        doc = up_aws(dep, state, yes=yes, log=lambda m: console.print(f"[dim]·[/] {m}"),
                     confirm=lambda q: confirm(q, yes))
        typer.echo(json.dumps(doc, indent=2)) if json_out else console.print(
            f"[green]up[/]: {len(doc['stacks'])} stack(s) up to date")
        return
    require_target_available(dep)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet) as progress:
        bar = progress.add_task(f"up {dep.name}", total=None)

        def log(msg: str) -> None:
            progress.console.print(f"[dim]·[/] {msg}")
            progress.update(bar, description=msg)

        def on_task(task: str, n: int) -> None:
            progress.update(bar, description=f"ansible task {n}: {task}")

        report = do_up(dep, state, converge=converge, log=log, on_task=on_task)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _summary(console, report)


def _summary(console: object, report: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from hadeploy.deploy import UpReport

    assert isinstance(console, Console) and isinstance(report, UpReport)
    ans = report.ansible
    if ans:
        table = Table(box=None, pad_edge=False, title=None, show_header=True)
        for col in ("host", "ok", "changed", "failed", "unreachable"):
            table.add_column(col, justify="left" if col == "host" else "right")
        for host, stats in ans["hosts"].items():
            table.add_row(host, str(stats["ok"]), str(stats["changed"]),
                          str(stats["failed"]), str(stats["unreachable"]))
        console.print(table)
        console.print(f"ansible: {len(ans['hosts'])} hosts, changed={ans['changed']}, "
                      f"{ans['seconds']} s ({report.configure_reason})")
    made = len(report.created) + len(report.recreated) + len(report.started)
    answer = ", ".join(report.dns_answer)
    active = [r.name for r in report.topology.regions if r.vip in report.dns_answer]
    if report.changed:
        console.print(f"[green]up[/]: {made} object(s) created/restarted, "
                      f"{report.topology.dns.fqdn} → {answer} ({', '.join(active) or '?'}) "
                      f"in {report.seconds:.1f} s")
    else:
        hosts = sum(len(r.hosts) for r in report.topology.regions)
        why = (f"Ansible reported changed=0 on {len(ans['hosts'])} hosts" if ans
               else f"{hosts} hosts healthy, configuration unchanged")
        console.print(f"[green]up[/]: no changes ({why}) in {report.seconds:.1f} s")
    for region in report.unmanaged_regions:
        console.print(f"[yellow]note[/]: region '{region}' exists but is not in the desired "
                      "state; left alone (remove it with 'hadeploy down' of the whole "
                      "deployment)")
