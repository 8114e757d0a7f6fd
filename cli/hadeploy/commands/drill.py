"""``hadeploy drill``: inject a fault into the live deployment under a client's load and
report what the client saw."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    StateDirOpt,
    YesOpt,
    confirm,
    require_built,
    resolve,
    seconds_option,
    stderr_console,
)
from hadeploy.errors import ExitCode, HadeployError

WARMUP = 2.0  # seconds of load before the fault: the client's baseline


def drill(
    scenario: Annotated[str, typer.Argument(
        help="app-host | lb | db-host | dns (see 'Scenarios' below).")],
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="Directory for report.json, report.md and timeline.png "
        "[default: <state>/drills/<time>-<scenario>].")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the client to recover (1 to 3600).")] = 120.0,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Run a failure drill against the live deployment: a client reads and writes through
    the app's DNS name (honouring the TTL) while the fault is injected; the drill waits
    until the client is served again, brings the victim back, checks that every
    acknowledged write can be read, and reports the client-observed recovery time (RTO),
    the failed requests and the acknowledged writes lost (RPO) against 'objectives' in
    hadeploy.yaml.

    Scenarios (lab): app-host kills one app host of the active region; lb kills the load
    balancer holding its VIP; db-host kills its database leader; dns restarts the DNS
    server.

    Exit code 0 when the objectives were met, 1 when not (the report says why), 3 when the
    deployment is not healthy enough to drill, 7 on a target without drills (aws). Takes the
    deployment lock; asks on a terminal unless --yes; audited ('status' shows the last
    drill of each scenario).

    Example:  hadeploy drill app-host --yes --report ./drill-app-host
    """
    from hadeploy import targets
    from hadeploy.config import Target
    from hadeploy.drill import SCENARIOS

    if scenario not in SCENARIOS:
        raise HadeployError(f"unknown drill scenario {scenario!r}",
                            hint=f"use one of: {', '.join(SCENARIOS)}", code=ExitCode.BAD_INPUT)
    timeout = seconds_option(timeout, name="--timeout", low=1, high=3600)
    dep, state = resolve(config, None, deployment, state_dir)
    if dep.target is not Target.LAB:
        raise HadeployError(f"drills inject faults with the lab's podman; target "
                            f"{dep.target.value} has none yet",
                            hint="AWS Fault Injection Service is the counterpart; see "
                            "docs/aws.md", code=ExitCode.NOT_AVAILABLE)
    require_built(dep, state)
    runtime = targets.for_deployment(dep, state).runtime()
    from hadeploy.targets.lab.faults import LabFaults

    faults = LabFaults(dep.name, lambda: runtime.status(1.0))
    doc = runtime.status(1.0)
    if not doc.healthy:
        raise HadeployError(f"'{dep.name}' is not healthy (active region "
                            f"{doc.active_region or 'NONE'}): a drill would measure the "
                            "breakage, not the recovery",
                            hint="'hadeploy status' shows what is down; 'hadeploy up' "
                            "repairs it", code=ExitCode.REFUSED)
    victims, what, region = faults.choose(scenario, doc)
    confirm(f"Drill '{scenario}' on '{dep.name}' ({SCENARIOS[scenario]}: {', '.join(victims)})"
            " under load?", yes)
    console = stderr_console(quiet=json_out)
    directory = report_dir or state.path / "drills" / (
        time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{scenario}")
    _writable(directory)  # before any fault: a drill whose report is lost is wasted
    with state.lock("drill"):
        state.audit("drill-start", scenario=scenario, victims=victims)
        report = _run(scenario, dep, runtime.topology(), faults, victims, what, region,
                      timeout, console)
        from hadeploy.drill import write_reports

        paths = write_reports(report, directory)
        state.audit("drill", scenario=scenario, met=report.met, rto_seconds=report.rto_seconds,
                    rpo_seconds=report.rpo_seconds, failed=report.failed,
                    requests=report.requests, lost_writes=report.lost_writes,
                    healed=report.healed, problems=report.problems,
                    report=paths["markdown"])
    if json_out:
        typer.echo(json.dumps({**report.to_dict(), "reports": paths}, indent=2))
    else:
        from hadeploy.drill import render_markdown

        typer.echo(render_markdown(report))
        typer.echo(f"reports: {paths['markdown']}, {paths['png']}")
    if not report.met:
        raise typer.Exit(int(ExitCode.FAILED))


def _run(scenario: str, dep: Any, topo: Any, faults: Any, victims: list[str], what: str,
         region: str | None, timeout: float, console: Any) -> Any:
    from hadeploy import drill as d
    from hadeploy.state import utc_now

    started_at, start = utc_now(), time.time()
    client = d.Client(f"drill-{scenario}-{int(start)}",
                      d.dns_resolver(topo.dns.server, topo.dns.port, topo.dns.fqdn)).start()
    healed, heal = False, "not attempted"
    try:
        time.sleep(WARMUP)
        console.print(f"[dim]·[/] {what}")
        fault_at = time.time()
        faults.inject(scenario, victims)
        phases = {"fault": fault_at - start}
        while True:
            outage = d.analyze(client.samples, fault_at, time.time())
            if outage.settled or time.time() - fault_at > timeout:
                break
            time.sleep(0.2)
        if outage.first_failure is not None:
            phases["first failure"] = outage.first_failure - start
        if outage.recovered_at is not None and outage.failed:
            phases["client recovered"] = outage.recovered_at - start
        rto = "never" if outage.rto_seconds is None else f"after {outage.rto_seconds:.2f} s"
        console.print(f"[dim]·[/] client: {outage.failed} failed request(s), recovered {rto}")
    finally:
        client.stop()
        ended_at = time.time()
        try:
            heal = faults.heal(victims)
            healed = True
        except HadeployError as exc:
            heal = exc.message
    phases["healed"] = time.time() - start
    outage = d.analyze(client.samples, fault_at, ended_at)
    read = d.Client("read-back", client.resolve)
    lost = d.lost_writes(client.acked, lambda item: _readable(read, item))
    rpo = d.rpo_seconds(lost, fault_at)
    objectives = {"rto": dep.objectives.rto, "rpo": dep.objectives.rpo}
    problems = d.judge(outage, rpo, objectives)
    if not healed:
        problems.append(f"the victims did not come back: {heal}")
    failed = [s for s in client.samples if not s.ok and s.at >= fault_at]
    return d.Report(
        scenario=scenario, deployment=dep.name, target=dep.target.value,
        started_at=started_at, fault=what, victims=victims, region=region,
        phases={k: round(v, 3) for k, v in phases.items()}, requests=outage.requests,
        failed=outage.failed, failed_by_method={m: sum(1 for s in failed if s.method == m)
                                                for m in sorted({s.method for s in failed})},
        failed_before_fault=outage.failed_before_fault, rto_seconds=outage.rto_seconds,
        settled=outage.settled, acked_writes=len(client.acked), lost_writes=len(lost),
        lost_sample=[i for i, _ in lost[:20]], rpo_seconds=rpo, objectives=objectives,
        met=not problems, problems=problems, healed=healed, heal=heal,
        timeline=d.timeline(client.samples, start))


def _writable(directory: Path) -> None:
    import os

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HadeployError(f"--report {directory} cannot be created ({exc.strerror})",
                            hint="pass --report naming a writable directory",
                            code=ExitCode.BAD_INPUT) from None
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise HadeployError(f"--report {directory} is not a writable directory",
                            hint="pass --report naming a writable directory",
                            code=ExitCode.BAD_INPUT)


def _readable(client: Any, item: str, attempts: int = 10) -> bool:
    """The item can be read back through the app's name (a 5xx or a transport error is
    retried for a few seconds; a 404 is final)."""
    for _ in range(attempts):
        if client.request("GET", f"/items/{item}") is not None:
            return True
        if client.samples and client.samples[-1].detail == "404":
            return False
        time.sleep(0.5)
    return False
