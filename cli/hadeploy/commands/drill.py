"""``hadeploy drill``: inject a fault into the live deployment under a client's load and
report what the client saw; ``drill all`` runs the recovery plan end to end; ``drill
schedule`` prints the systemd units (or cron line) that run drills regularly."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
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
DEFAULT_CALENDAR = "Wed *-*-* 10:00:00"  # 'drill schedule': a working-hours weekday
CRON_RE = re.compile(r"\A(@(daily|weekly|monthly)|([0-9A-Za-z*/,-]+\s+){4}[0-9A-Za-z*/,-]+)\Z")


def drill(
    scenario: Annotated[str, typer.Argument(
        help="app-host | lb | db-host | dns | upgrade | region | operator | partition | all | "
        "schedule (see 'Scenarios' below).")],
    scheduled: Annotated[list[str] | None, typer.Argument(
        help="With 'schedule': the scenarios to run (default: the ones that leave "
        "traffic where it is).", show_default=False)] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="Directory for report.json, report.md and timeline.png ('all': a "
        "directory per scenario) [default: <state>/drills/<time>-<scenario>].")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the client to recover (1 to 3600).")] = 120.0,
    on_calendar: Annotated[str, typer.Option(
        "--on-calendar", help="With 'schedule': when the timer fires (systemd OnCalendar=).")
    ] = DEFAULT_CALENDAR,
    cron: Annotated[str | None, typer.Option(
        "--cron", help="With 'schedule': print an /etc/cron.d line for this schedule "
        "(e.g. '0 10 * * 3') instead of systemd units.")] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Run a failure drill against the live deployment: a client reads and writes through
    the app's DNS name (honouring the TTL) while the fault is injected; the drill waits
    until the client is served again, brings the victims back, checks that every
    acknowledged write can be read, and reports the client-observed recovery time (RTO)
    split into where it went, the failed requests and the acknowledged writes lost (RPO)
    against 'objectives' in hadeploy.yaml.

    Scenarios (lab): app-host kills one app host of the active region; lb kills the load
    balancer holding its VIP; db-host kills its database leader; dns restarts the DNS
    server; upgrade restarts every app host through the rolling path an upgrade takes (not
    one request may fail); region kills every host of the active region while watch runs
    (the drill's own, unless one is running) and rejoins them with 'up' afterwards;
    operator kills a failover between fencing and the DNS change and runs it again;
    partition cuts the active region off from the other regions, the DNS server and this
    machine with firewall rules while its hosts keep running, under watch, and checks from
    inside it that it stops taking writes by itself (within its lease) and before another
    region takes any; then it lifts the cut and rejoins it with 'up'. region, operator and
    partition leave traffic on the region they moved it to. 'all' runs every scenario
    the deployment has, in that order; 'schedule' prints a systemd service and timer (or
    with --cron a cron line) that run drills regularly.

    Exit code 0 when the objectives were met, 1 when not (the report says why), 3 when the
    deployment is not healthy enough to drill, 7 on a target without drills (aws). Takes the
    drill lock (one drill at a time; never the deployment lock, so a real failover is never
    blocked by a drill); asks on a terminal unless --yes; audited ('status' shows the last
    drill of each scenario).

    Example:  hadeploy drill app-host --yes --report ./drill-app-host
    """
    from hadeploy.config import Target
    from hadeploy.drill import SCENARIOS

    if scenario not in (*SCENARIOS, "all", "schedule"):
        raise HadeployError(f"unknown drill scenario {scenario!r}",
                            hint=f"use one of: {', '.join(SCENARIOS)}, all, schedule",
                            code=ExitCode.BAD_INPUT)
    if scheduled and scenario != "schedule":
        raise HadeployError(f"unexpected argument(s) after {scenario!r}: "
                            f"{' '.join(scheduled)[:200]}", hint="name one scenario; 'hadeploy "
                            "drill schedule SCENARIO...' takes several", code=ExitCode.BAD_INPUT)
    timeout = seconds_option(timeout, name="--timeout", low=1, high=3600)
    dep, state = resolve(config, None, deployment, state_dir)
    if dep.target is not Target.LAB:
        raise HadeployError(f"drills inject faults with the lab's podman; target "
                            f"{dep.target.value} has none yet",
                            hint="AWS Fault Injection Service is the counterpart; see "
                            "docs/aws.md", code=ExitCode.NOT_AVAILABLE)
    if scenario == "schedule":
        typer.echo(schedule(scheduled or [], dep.name, state.path.parent, config,
                            on_calendar=on_calendar, cron=cron), nl=False)
        return
    require_built(dep, state)
    from hadeploy import targets

    runtime = targets.for_deployment(dep, state).runtime()
    names = [scenario] if scenario != "all" else plan_all(dep)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = report_dir or state.path / "drills" / f"{stamp}-{scenario}"
    _writable(base)  # before any fault: a drill whose report is lost is wasted
    console = stderr_console(quiet=json_out)
    with state.lock("drill", name="drill.lock",
                    holder_hint="one drill at a time: wait for it to finish"):
        drill_one = Drill(dep, state, runtime, timeout, console)
        first = drill_one.prepare(names[0])
        question = (f"Drill '{scenario}' on '{dep.name}' ({', '.join(names)})?" if
                    scenario == "all" else f"Drill '{scenario}' on '{dep.name}' "
                    f"({SCENARIOS[scenario]}: {', '.join(first.victims)}) under load?")
        confirm(question, yes)
        reports, docs, stopped = [], [], ""
        for n, name in enumerate(names):
            try:
                chosen = first if n == 0 else drill_one.prepare(name)
            except HadeployError as exc:  # 'all': say which drills ran before stopping
                stopped = f"drill all stopped before {name}: {exc.message}"
                break
            directory = base / name if scenario == "all" else base
            report, paths = drill_one.run(chosen, directory)
            reports.append(report)
            docs.append({**report.to_dict(), "reports": paths})
            if not report.healed and n + 1 < len(names):
                stopped = f"drill all stopped after {name}: its victims did not come back"
                break
    _print(scenario, reports, docs, json_out, stopped)
    if not all(r.met for r in reports) or stopped:
        raise typer.Exit(int(ExitCode.FAILED))


def plan_all(dep: Any) -> list[str]:
    """The scenarios 'drill all' runs on this deployment, in SCENARIOS order."""
    from hadeploy.drill import SCENARIOS

    skip = set()
    if not dep.data.enabled:
        skip.add("db-host")
    if len(dep.regions) < 2:
        skip |= {"region", "operator", "partition"}
    return [s for s in SCENARIOS if s not in skip]


def _print(scenario: str, reports: list[Any], docs: list[dict[str, Any]],
           json_out: bool, stopped: str) -> None:
    from hadeploy.drill import render_markdown

    if json_out:
        typer.echo(json.dumps(docs[0] if scenario != "all" else
                              {"met": all(r.met for r in reports) and not stopped,
                               "stopped": stopped or None, "drills": docs}, indent=2))
        return
    for report, doc in zip(reports, docs, strict=True):
        typer.echo(render_markdown(report))
        typer.echo(f"reports: {doc['reports']['markdown']}, {doc['reports']['png']}\n")
    if scenario == "all":
        for r in reports:
            rto = "never" if r.rto_seconds is None else f"{r.rto_seconds:.2f} s"
            typer.echo(f"{r.scenario:9} {'met' if r.met else 'NOT MET':8} RTO {rto:>8}, "
                       f"{r.failed} failed, {r.lost_writes} lost")
        if stopped:
            typer.echo(stopped)


@dataclass
class _Run:
    """What happened during one drill, besides the client's samples (POSIX times)."""

    start: float
    fault_at: float
    ended_at: float = 0.0
    healed_at: float = 0.0
    healed: bool = False
    heal: str = "not attempted"
    marks: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    inside: list[tuple[float, int]] | None = None  # partition: the inside writer's samples


@dataclass
class Chosen:
    scenario: str
    victims: list[str]
    what: str
    region: str | None


class Drill:
    """One drill after another on one deployment (the drill lock held by the caller)."""

    def __init__(self, dep: Any, state: Any, runtime: Any, timeout: float,
                 console: Any) -> None:
        from hadeploy.targets.lab.faults import LabFaults

        self.dep, self.state, self.runtime, self.timeout = dep, state, runtime, timeout
        self.console = console
        self.faults = LabFaults(dep.name, lambda: runtime.status(1.0), lambda: {
            r.name: r.subnet for r in runtime.topology().regions}, start=runtime.start)

    def prepare(self, scenario: str) -> Chosen:
        doc = self.runtime.status(1.0)
        if not doc.healthy:
            raise HadeployError(f"'{self.dep.name}' is not healthy (active region "
                                f"{doc.active_region or 'NONE'}): a drill would measure "
                                "the breakage, not the recovery",
                                hint="'hadeploy status' shows what is down; 'hadeploy up' "
                                "repairs it", code=ExitCode.REFUSED)
        if scenario == "db-host" and not self.dep.data.enabled:
            raise HadeployError("this deployment has no database tier",
                                hint="drill app-host, lb or dns", code=ExitCode.BAD_INPUT)
        if scenario in ("region", "partition"):
            from hadeploy.watch import last_failover_at

            policy = self.dep.failover
            wait = policy.min_interval - (time.time() - last_failover_at(self.state))
            if wait > 0:
                raise HadeployError(
                    f"the last failover was less than failover.min_interval "
                    f"({policy.min_interval:.0f} s) ago: watch would hold this one for "
                    f"{wait:.0f} s more, and the drill would measure the hold",
                    hint=f"drill the region in {wait:.0f} s", code=ExitCode.REFUSED)
        victims, what, region = self.faults.choose(scenario, doc)
        return Chosen(scenario, victims, what, region)

    def run(self, chosen: Chosen, directory: Path) -> tuple[Any, dict[str, str]]:
        from hadeploy.drill import write_reports

        _writable(directory)
        self.state.audit("drill-start", scenario=chosen.scenario, victims=chosen.victims)
        report = self._measure(chosen)
        paths = write_reports(report, directory)
        self.state.audit("drill", scenario=chosen.scenario, met=report.met,
                         rto_seconds=report.rto_seconds, rpo_seconds=report.rpo_seconds,
                         failed=report.failed, requests=report.requests,
                         lost_writes=report.lost_writes, healed=report.healed,
                         problems=report.problems, rto_split=report.rto_split,
                         serving=report.serving, report=paths["markdown"])
        return report, paths

    # -- one drill -------------------------------------------------------------------------

    def _measure(self, chosen: Chosen) -> Any:
        from hadeploy import drill as d

        scenario, topo = chosen.scenario, self.runtime.topology()
        operator = _DyingFailover(self) if scenario == "operator" else None  # fork first
        start = time.time()
        client = d.Client(f"drill-{scenario}-{int(start)}",
                          d.dns_resolver([(s.address, s.port) for s in topo.dns.name_servers],
                                         topo.dns.fqdn)).start()
        watcher = _Watch(self) if scenario in ("region", "partition") else None
        run = _Run(start=start, fault_at=start)
        inside = None
        try:
            if watcher is not None:
                watcher.start()
            time.sleep(WARMUP)
            self.console.print(f"[dim]·[/] {chosen.what}")
            run.fault_at = time.time()
            try:
                if scenario == "partition":
                    inside = self._partition(chosen, topo)
                else:
                    self._inject(chosen, operator, run)
            except HadeployError as exc:  # reported; the victims are still brought back
                run.problems.append(f"the {scenario} fault did not go as planned: "
                                    f"{exc.message}")
            deadline = time.time() + self.timeout  # from the end of the fault (a roll)
            while True:
                outage = d.analyze(client.samples, run.fault_at, time.time())
                if outage.settled or time.time() > deadline:
                    break
                time.sleep(0.2)
            rto = "never" if outage.rto_seconds is None else f"after {outage.rto_seconds:.2f} s"
            self.console.print(f"[dim]·[/] client: {outage.failed} failed request(s), "
                               f"recovered {rto}")
        finally:
            client.stop()
            run.ended_at = time.time()
            if inside is not None:
                run.inside = inside.finish()
            if watcher is not None:
                watcher.stop()
                if watcher.error:
                    run.problems.append(f"the drill's watch stopped: {watcher.error}")
            if operator is not None:
                operator.close()
            try:
                run.heal = self._heal(chosen)
                run.healed = True
            except HadeployError as exc:
                run.heal = exc.message
                run.problems.append(f"the victims did not come back: {exc.message}")
            run.healed_at = time.time()
        return self._report(chosen, client, run)

    def _partition(self, chosen: Chosen, topo: Any) -> Any:
        """A writer inside the region (on its first app host, through its VIP) for longer
        than the region's lease, then the cut."""
        from hadeploy.targets.lab.faults import InsideWriter
        from hadeploy.topology import HostKind, lease_bound

        assert chosen.region is not None
        region = topo.region(chosen.region)
        lease = self.dep.failover.lease
        app = next(h.name for h in region.of_kind(HostKind.APP) if h.name in chosen.victims)
        writer = InsideWriter(app, region.vip, f"drill-partition-inside-{int(time.time())}",
                              duration=max(10.0, (lease_bound(lease) if lease else 0) + 6))
        time.sleep(0.3)  # its first writes land before the cut: the baseline
        self.faults.partition(chosen.region)
        return writer

    def _inject(self, chosen: Chosen, operator: _DyingFailover | None, run: _Run) -> None:
        if operator is not None:
            run.marks += operator.inject(chosen.victims[0])
        elif chosen.scenario == "upgrade":
            run.problems += self._upgrade(chosen.victims)
            run.marks.append((time.time(), "roll done"))
        else:
            self.faults.inject(chosen.scenario, chosen.victims)

    def _report(self, chosen: Chosen, client: Any, run: _Run) -> Any:
        import datetime as dt

        from hadeploy import drill as d
        from hadeploy.state import format_time

        scenario, start, fault_at = chosen.scenario, run.start, run.fault_at
        outage = d.analyze(client.samples, fault_at, run.ended_at)
        read = d.Client("read-back", client.resolve)
        lost = d.lost_writes(client.acked, lambda item: _readable(read, item))
        rpo = d.rpo_seconds(lost, fault_at)
        objectives = {"rto": self.dep.objectives.rto, "rpo": self.dep.objectives.rpo}
        problems = d.judge(outage, rpo, objectives, scenario) + run.problems
        isolated = None
        if run.inside is not None:
            from hadeploy.topology import lease_bound

            lease = self.dep.failover.lease
            # (a write in flight at the cut may still be acknowledged by the cut-off region)
            isolated, cut_problems = d.isolation(
                run.inside, fault_at,
                [at for _, at, region in client.acked if region != chosen.region],
                lease_bound(lease) if lease else None)
            problems += cut_problems
        marks = run.marks + d.audit_marks(list(self.state.audit_records()), fault_at)
        phases = {"fault": fault_at - start}
        if outage.first_failure is not None:
            phases["first failure"] = outage.first_failure - start
        phases.update((label, at - start) for at, label in sorted(marks) if at <= run.ended_at)
        if outage.recovered_at is not None and outage.failed:
            phases["client recovered"] = outage.recovered_at - start
        phases["healed"] = run.healed_at - start
        failed = [s for s in client.samples if not s.ok and s.at >= fault_at]
        return d.Report(
            scenario=scenario, deployment=self.dep.name, target=self.dep.target.value,
            started_at=format_time(dt.datetime.fromtimestamp(start, dt.UTC)),
            fault=chosen.what, victims=chosen.victims, region=chosen.region,
            phases={k: round(v, 3) for k, v in sorted(phases.items(), key=lambda kv: kv[1])},
            requests=outage.requests, failed=outage.failed,
            failed_by_method={m: sum(1 for s in failed if s.method == m)
                              for m in sorted({s.method for s in failed})},
            failed_before_fault=outage.failed_before_fault, rto_seconds=outage.rto_seconds,
            settled=outage.settled, acked_writes=len(client.acked), lost_writes=len(lost),
            lost_sample=[i for i, _ in lost[:20]], rpo_seconds=rpo, objectives=objectives,
            met=not problems, problems=problems, healed=run.healed, heal=run.heal,
            timeline=d.timeline(client.samples, start),
            rto_split=d.rto_split(fault_at, outage.recovered_at if outage.failed else None,
                                  marks),
            serving=self.runtime.status(1.0).active_region if scenario in d.MOVES_TRAFFIC
            else None, isolation=isolated)

    def fail_over(self, to: str, reason: str, seen: Any = None) -> Any:
        """A failover run in this process (the drill's watch, the operator's re-run)."""
        from hadeploy.failover import FailoverContext, FailoverRequest, failover

        ctx = FailoverContext.of(self.dep, self.state, self.runtime,
                                 log=lambda m: self.console.print(f"[dim]·[/] {m}"))
        return failover(ctx, FailoverRequest(to=to, reason=reason, seen=seen))

    def _upgrade(self, hosts: list[str]) -> list[str]:
        """Every app host restarted by the configuration run's rolling play, as a changed
        app version restarts them; the problems of that run (empty: none)."""
        from hadeploy import deploy, targets
        from hadeploy.targets import ApplyHooks

        self.faults.mark_restart(hosts)
        target = targets.for_deployment(
            self.dep, self.state, log=lambda m: self.console.print(f"[dim]·[/] up: {m}"))
        try:
            deploy.up(target, converge=True, hooks=ApplyHooks())
        except HadeployError as exc:
            return [f"the rolling restart failed: {exc.message}"]
        return []

    def _heal(self, chosen: Chosen) -> str:
        scenario = chosen.scenario
        if scenario == "upgrade":
            return self.faults.wait_healthy(chosen.victims, "restarted one by one")
        if scenario == "operator":
            return "nothing to bring back: the re-run failover finished the move"
        if scenario == "region":
            return self._rejoin(chosen)
        if scenario == "partition":
            return self._rejoin(chosen, cut=True)
        return self.faults.heal(chosen.victims)

    def _rejoin(self, chosen: Chosen, *, cut: bool = False) -> str:
        """A whole region came back (its hosts started, or ``cut``: the partition lifted),
        then 'up' rejoins them (a deposed database primary comes back fenced and is
        rebuilt as a standby)."""
        from hadeploy import deploy, targets
        from hadeploy.targets import ApplyHooks

        if cut:
            self.faults.unpartition()
        else:
            self.faults.start(chosen.victims)  # a DNS server first takes the newest zone
        target = targets.for_deployment(
            self.dep, self.state, log=lambda m: self.console.print(f"[dim]·[/] up: {m}"))
        deploy.up(target, hooks=ApplyHooks())  # raises when the configuration fails
        # (the region's prober is among the victims: status has no health for it)
        what = "reconnected" if cut else "started"
        return self.faults.wait_healthy(chosen.victims, f"{what} and rejoined by 'up' "
                                        f"({chosen.region} serves no traffic until a failback)")


class _Watch:
    """The region drill needs 'watch' to fail over: the one running, or the drill's own
    (a thread, for the drill's duration)."""

    def __init__(self, drill: Drill) -> None:
        self.drill, self.error = drill, ""
        self.holder = drill.state.lock_holder("watch.lock")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.holder is not None:
            self.drill.console.print(f"[dim]·[/] watch is already running ({self.holder})")
            return
        from hadeploy.watch import Watcher

        d = self.drill
        watcher = Watcher(d.dep, d.state, d.runtime, d.fail_over,
                          log=lambda m: d.console.print(f"[dim]·[/] watch: {m}"))

        def run() -> None:
            try:
                watcher.run(self._stop)
            except HadeployError as exc:
                self.error = exc.message

        self._thread = threading.Thread(target=run, daemon=True, name="drill-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)


class _DyingFailover:
    """The operator scenario: a failover in a child process (forked before the client's
    thread starts) that dies by SIGKILL at the moment it would change DNS: after the old
    region was fenced, before any client is sent to the new one. The operator (the drill)
    then runs the same failover again, which resumes from its journal."""

    def __init__(self, drill: Drill) -> None:
        import multiprocessing

        self.drill = drill
        ctx = multiprocessing.get_context("fork")
        self._go, theirs = ctx.Pipe()
        self._child = ctx.Process(target=_die_before_dns, args=(drill, theirs), daemon=True)
        self._child.start()
        theirs.close()

    def inject(self, to: str) -> list[tuple[float, str]]:
        self._go.send(to)
        self._child.join(300)
        marks = [(time.time(), "failover killed before DNS")]
        if self._child.exitcode != -9:
            raise HadeployError(f"the failover to be killed ended with {self._child.exitcode} "
                                "instead of being killed at its DNS change", code=ExitCode.FAILED)
        d = self.drill
        d.console.print("[dim]·[/] the failover was killed between fencing and DNS; running "
                        "it again")
        out = d.fail_over(to, "drill operator: re-run")
        if out.result != "done" or not out.resumed:
            raise HadeployError(f"the re-run failover ended {out.result} (resumed: "
                                f"{out.resumed})", code=ExitCode.FAILED)
        return marks

    def close(self) -> None:
        if self._child.is_alive():
            self._child.kill()
        self._child.join(10)
        self._go.close()


def _die_before_dns(drill: Drill, conn: Any) -> None:
    """In the forked child: wait for the go, then fail over and die at the DNS change."""
    import os
    import signal
    import sys

    from hadeploy.failover import FailoverContext, FailoverRequest, failover

    try:
        to = conn.recv()
    except EOFError:
        return
    ctx = FailoverContext.of(drill.dep, drill.state, drill.runtime)
    real = ctx.dns

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def replace(self, *_args: Any, **_kw: Any) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

    ctx.dns = Dying()  # type: ignore[assignment]
    try:
        failover(ctx, FailoverRequest(to=to, reason="drill operator: killed before DNS"))
    except HadeployError as exc:  # the parent reports the exit code; say why here
        print(f"drill operator: the failover stopped before DNS: {exc.message}",
              file=sys.stderr)
        os._exit(int(exc.code))


def schedule(scenarios: list[str], name: str, state_root: Path, config: Path | None, *,
             on_calendar: str, cron: str | None) -> str:
    """systemd units (or a cron line) that run ``scenarios`` one after another."""
    import shlex
    import sys

    from hadeploy.config import CALENDAR_RE, DEFAULT_CONFIG
    from hadeploy.drill import MOVES_TRAFFIC, SCENARIOS

    wanted = scenarios or [s for s in SCENARIOS if s not in MOVES_TRAFFIC]
    unknown = [s for s in wanted if s not in (*SCENARIOS, "all")]
    if unknown:
        raise HadeployError(f"unknown drill scenario {unknown[0][:60]!r}",
                            hint=f"use any of: {', '.join(SCENARIOS)}, all",
                            code=ExitCode.BAD_INPUT)
    if cron is not None and not CRON_RE.match(cron.strip()):
        raise HadeployError(f"--cron {cron[:80]!r} is not a cron schedule",
                            hint="five fields, e.g. --cron '0 10 * * 3' (Wednesdays 10:00)",
                            code=ExitCode.BAD_INPUT)
    if cron is None and not re.match(CALENDAR_RE, on_calendar):
        raise HadeployError(f"--on-calendar {on_calendar[:80]!r} is not a systemd calendar "
                            "expression", hint="e.g. --on-calendar 'Wed *-*-* 10:00:00' "
                            "(man systemd.time)", code=ExitCode.BAD_INPUT)
    exe = Path(sys.argv[0]).resolve()
    program = [str(exe)] if exe.name == "hadeploy" else [sys.executable, "-m", "hadeploy"]
    path = config or Path(DEFAULT_CONFIG)
    where = ["--config", str(path.resolve())] if path.exists() else ["--deployment", name]
    workdir = path.resolve().parent if path.exists() else Path.cwd()
    commands = [shlex.join([*program, "drill", s, "--yes", *where]) for s in wanted]
    env = f"HADEPLOY_STATE_DIR={shlex.quote(str(state_root.resolve()))}"
    moving = sorted(MOVES_TRAFFIC) if "all" in wanted else [s for s in wanted
                                                              if s in MOVES_TRAFFIC]
    note = (f"# note: {' and '.join(moving)} move traffic to another region and leave it "
            "there\n") if moving else ""
    if cron is not None:
        return (f"# /etc/cron.d/hadeploy-drill-{name}: {', '.join(wanted)}; each drill "
                "stops the chain when its objectives are missed\n" + note +
                f"{cron.strip()} root cd {shlex.quote(str(workdir))} && {env} "
                + " && ".join(commands) + "\n")
    execs = "\n".join(f"ExecStart={c}" for c in commands)
    return f"""\
# /etc/systemd/system/hadeploy-drill-{name}.service
{note}[Unit]
Description=hadeploy failure drills on {name} ({', '.join(wanted)})
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
WorkingDirectory={workdir}
Environment={env}
# one after another; a drill that misses its objectives (exit 1) stops the rest and
# fails the unit, so that 'systemctl --failed' and the unit's OnFailure= see it
{execs}
TimeoutStartSec=2h

# /etc/systemd/system/hadeploy-drill-{name}.timer
[Unit]
Description=hadeploy failure drills on {name}, {on_calendar}

[Timer]
OnCalendar={on_calendar}
Persistent=true

[Install]
WantedBy=timers.target

# enable with: systemctl daemon-reload && systemctl enable --now hadeploy-drill-{name}.timer
"""


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
        if client.samples and client.samples[-1].status == 404:
            return False
        time.sleep(0.5)
    return False

