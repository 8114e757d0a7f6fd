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
) -> None:
    """Probe every region continuously and fail over when the active one is down by quorum.

    Runs in the foreground (a systemd unit or a pipeline job); exits cleanly on SIGTERM or
    Ctrl-C. Honours the failover policy: threshold, quorum, hold-down, min_interval between
    failovers; fails back only if auto_failback is true. Every decision goes to the audit log,
    every probe to the history database.

    Example:  hadeploy watch --config hadeploy.yaml
    """
    from hadeploy import targets
    from hadeploy.failover import FailoverContext, FailoverRequest, Outcome, failover
    from hadeploy.watch import Watcher

    if max_seconds is not None:
        max_seconds = seconds_option(max_seconds, name="--max-seconds", low=0, high=10**9)
    dep, state = resolve(config, None, deployment, state_dir)
    require_built(dep, state)
    runtime = targets.for_deployment(dep, state).runtime()
    console = stderr_console()

    def fail_over(to: str, reason: str) -> Outcome:
        ctx = FailoverContext.of(dep, state, runtime,
                                 log=lambda m: console.print(f"[dim]·[/] {m}"))
        return failover(ctx, FailoverRequest(to=to, reason=reason))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher = Watcher(dep, state, runtime, fail_over, log=lambda m: console.print(f"watch: {m}"))
    stats = watcher.run(stop, max_seconds)
    console.print(f"watch: stopped ({stats.rounds} rounds, {len(stats.failovers)} failovers)")
