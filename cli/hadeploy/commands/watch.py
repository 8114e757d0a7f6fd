"""``hadeploy watch``: the automatic failover loop, in the foreground."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from hadeploy.commands._common import ConfigOpt, DeploymentOpt, StateDirOpt, resolve, stderr_console


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
    failovers; fails back only if auto_failback is true. Every decision goes to the audit
    log, every probe to the history database.

    Example:  hadeploy watch --config hadeploy.yaml
    """
    from hadeploy import failover as fo
    from hadeploy.operate import for_deployment, require_built
    from hadeploy.topology import Topology
    from hadeploy.watch import Watcher

    dep, state = resolve(config, None, deployment, state_dir)
    require_built(dep, state)
    op = for_deployment(dep, state)
    console = stderr_console()
    topology = op.topology

    def read_active(topo: Topology) -> str | None:
        answer = op.dns(topo).read(topo.dns.record)
        return fo.active_region(topo, answer)

    def do_failover(to: str, reason: str) -> Any:
        topo = topology()
        return fo.failover(dep, topo, state, op.dns(topo), op.ops(topo), to=to, reason=reason,
                           log=lambda m: console.print(f"[dim]·[/] {m}"),
                           extra_votes=op.extra_votes)

    def refence(region: str) -> str:
        topo = topology()
        return op.ops(topo).fence(topo.region(region), timeout=5)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher = Watcher(dep, state, topology, do_failover, read_active,
                      log=lambda m: console.print(f"watch: {m}"), refence=refence,
                      extra_votes=op.extra_votes)
    stats = watcher.run(stop, max_seconds)
    console.print(f"watch: stopped ({stats.rounds} rounds, {len(stats.failovers)} failovers)")
