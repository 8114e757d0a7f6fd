"""``hadeploy watch``: the automatic failover loop, in the foreground."""

from __future__ import annotations

import signal
import threading

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    StateDirOpt,
    require_built,
    resolve,
    seconds_option,
    stderr_console,
)


def watch(
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    max_seconds: float | None = typer.Option(
        None, "--max-seconds", help="Stop after this long (drills, tests); default: forever."),
    metrics: str | None = typer.Option(
        None, "--metrics", metavar="ADDR", show_default=False,
        help="Serve Prometheus metrics on http://ADDR/metrics: a port (on 127.0.0.1, e.g. "
        "9468, the usual one) or HOST:PORT ([::1]:9468 for IPv6). Default: off. A "
        "non-loopback address exposes deployment internals (regions, vantage points, "
        "failovers, backups) to whoever can reach it."),
    print_rules: bool = typer.Option(
        False, "--print-alert-rules", help="Print the Prometheus alert rules for these "
        "metrics (a rule file) and exit."),
    print_dashboard: bool = typer.Option(
        False, "--print-dashboard", help="Print the Grafana dashboard (JSON, to import) for "
        "these metrics and exit."),
) -> None:
    """Probe every region continuously and fail over when the active one is down by quorum.

    Runs in the foreground (a systemd unit or a pipeline job); exits cleanly on SIGTERM or
    Ctrl-C. Honours the failover policy: threshold, quorum, hold-down, min_interval between
    failovers; fails back only if auto_failback is true. Every decision goes to the audit log,
    every probe to the history database.

    With --metrics, also serves Prometheus metrics (docs/monitoring.md): probes per region
    and vantage point, the active region, failovers and refusals, fenced regions,
    replication lag, backups and drills; alert rules and a Grafana dashboard ship with
    hadeploy (--print-alert-rules, --print-dashboard). Exit code 2 when ADDR cannot be
    parsed or listened on (nothing is probed then), 4 when another watch runs.

    Example:  hadeploy watch --config hadeploy.yaml --metrics 127.0.0.1:9468
    """
    from hadeploy import targets
    from hadeploy.failover import FailoverContext, FailoverRequest, Outcome, failover
    from hadeploy.quorum import Seen
    from hadeploy.watch import Watcher

    if print_rules or print_dashboard:
        from hadeploy.metrics import monitoring_file

        typer.echo(monitoring_file("alerts.yml" if print_rules else "grafana-dashboard.json"),
                   nl=False)
        return
    if max_seconds is not None:
        max_seconds = seconds_option(max_seconds, name="--max-seconds", low=0, high=10**9)
    listen = None
    if metrics is not None:
        from hadeploy.metrics import parse_addr

        listen = parse_addr(metrics)
    dep, state = resolve(config, None, deployment, state_dir)
    require_built(dep, state)
    console = stderr_console()
    exporter, server = None, None
    if listen is not None:  # bound before anything is probed: a bad ADDR changes nothing
        from hadeploy.metrics import WatchMetrics, serve

        exporter = WatchMetrics(dep, log=lambda m: console.print(f"watch: {m}"))
        server = serve(exporter.registry, listen)
        console.print(f"watch: metrics on {listen.url}" + ("" if listen.loopback else
                      " [yellow](not loopback: whoever reaches it sees this deployment's "
                      "internals)[/]"))
    runtime = targets.for_deployment(dep, state).runtime()

    def fail_over(to: str, reason: str, seen: Seen | None = None) -> Outcome:
        ctx = FailoverContext.of(dep, state, runtime,
                                 log=lambda m: console.print(f"[dim]·[/] {m}"))
        return failover(ctx, FailoverRequest(to=to, reason=reason, seen=seen))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher = Watcher(dep, state, runtime, fail_over, log=lambda m: console.print(f"watch: {m}"),
                      observer=exporter)
    try:
        if exporter is not None:
            exporter.status = lambda: runtime.status(1.0)
            exporter.start(stop)
        stats = watcher.run(stop, max_seconds)
    finally:
        stop.set()
        if server is not None:
            server.shutdown()
            server.server_close()
    console.print(f"watch: stopped ({stats.rounds} rounds, {len(stats.failovers)} failovers)")
