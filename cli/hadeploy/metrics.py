"""``hadeploy watch --metrics``: Prometheus metrics of a running watch (docs/monitoring.md).

Three sources, one registry of our own (never prometheus_client's global one):

- every probe round of the watcher (:class:`hadeploy.watch.WatchObserver`): per region and
  vantage point up/down and latency, each region's quorum verdict, which region DNS names,
  fenced regions, the database tier's replication lag (the watcher observes it anyway);
- the watcher's decisions: failovers by cause, refusals by reason;
- a slower gather of what ``hadeploy status`` knows (backups, restore tests, drills), every
  :data:`STATUS_EVERY` seconds in its own thread: a slow or failing gather never delays a
  probe round; it is logged once and counted (``hadeploy_gather_errors_total``).

Ages (last backup, last restore test) are computed when Prometheus scrapes, from the times
the last gather read, so they keep growing between gathers.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.watch import RoundView, WatchObserver

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from hadeploy.config import Deployment
    from hadeploy.status import BackupStatus, StatusDoc

DEFAULT_PORT = 9468
DEFAULT_HOST = "127.0.0.1"
STATUS_EVERY = 30.0  # seconds between two gathers of status-like data
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FAILOVER_CAUSES = ("active_down", "auto_failback")
REFUSAL_REASONS = ("min_interval", "no_healthy_region", "refused", "locked", "failed")
HOSTNAME_RE = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")

Log = Callable[[str], None]


def monitoring_file(name: str) -> str:
    """A file shipped in hadeploy/monitoring: the alert rules, the Grafana dashboard."""
    from importlib.resources import files

    return files("hadeploy").joinpath("monitoring", name).read_text(encoding="utf-8")


# --- the address to listen on ------------------------------------------------------------

@dataclass(frozen=True)
class ListenAddr:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}/metrics"


def _bad_addr(text: str, why: str) -> HadeployError:
    return HadeployError(
        f"--metrics {text[:80]!r} is not an address to listen on: {why}",
        hint=f"pass a port (--metrics {DEFAULT_PORT} listens on {DEFAULT_HOST}) or HOST:PORT, "
        f"e.g. --metrics {DEFAULT_HOST}:{DEFAULT_PORT} or --metrics [::1]:{DEFAULT_PORT}",
        code=ExitCode.BAD_INPUT)


def parse_addr(text: str) -> ListenAddr:
    """``--metrics`` ADDR: PORT (on 127.0.0.1), HOST (port 9468), HOST:PORT or [IPv6]:PORT;
    empty: 127.0.0.1:9468. A bare ':PORT' is refused: some tools read it as every
    interface, others as loopback."""
    value = text.strip()
    if not value:
        return ListenAddr(DEFAULT_HOST, DEFAULT_PORT)
    if value.isdigit():
        return ListenAddr(DEFAULT_HOST, _port(text, value))
    host, port = value, str(DEFAULT_PORT)
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:] if end > 0 else "?"
        if end < 0 or (rest and not rest.startswith(":")):
            raise _bad_addr(text, "write an IPv6 address in brackets, e.g. [::1]:9468")
        host, port = value[1:end], rest[1:] if rest else port
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad_addr(text, f"{host[:60]!r} is not an IPv6 address") from None
        return ListenAddr(host, _port(text, port))
    if value.count(":") > 1:
        raise _bad_addr(text, "an IPv6 address needs brackets, e.g. [::1]:9468")
    if ":" in value:
        host, port = value.split(":")
    if not host:
        raise _bad_addr(text, "no host: name it (127.0.0.1 for this machine only, 0.0.0.0 "
                        "for every interface)")
    if not HOSTNAME_RE.match(host):
        raise _bad_addr(text, f"{host[:60]!r} is neither an IP address nor a host name")
    return ListenAddr(host, _port(text, port))


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad_addr(text, f"the port {port[:20]!r} is not a number from 1 to 65535")
    return int(port)


def serve(registry: CollectorRegistry, addr: ListenAddr) -> WSGIServer:
    """Serve ``/metrics`` on ``addr`` in a daemon thread; a clear error when it cannot bind."""
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(addr.port, addr.host, registry=registry)
    except OSError as exc:
        raise _bind_error(addr, exc) from None
    return server


def _bind_error(addr: ListenAddr, exc: OSError) -> HadeployError:
    other = f"--metrics {addr.host if ':' not in addr.host else f'[{addr.host}]'}:" \
        f"{addr.port + 1 if addr.port < 65535 else DEFAULT_PORT}"
    if isinstance(exc, socket.gaierror):
        why, hint = (f"the host {addr.host!r} cannot be resolved ({exc.strerror})",
                     f"use an IP address of this machine, e.g. --metrics "
                     f"{DEFAULT_HOST}:{addr.port}")
    elif exc.errno == errno.EADDRINUSE:
        why, hint = ("the port is in use", "another process listens there (another "
                     f"'hadeploy watch'? see: ss -ltnp 'sport = :{addr.port}'): stop it, "
                     f"or pass another port, e.g. {other}")
    elif exc.errno == errno.EACCES:
        why, hint = ("permission denied", f"ports below 1024 need privileges: use a higher "
                     f"one, e.g. --metrics {DEFAULT_HOST}:{DEFAULT_PORT}")
    elif exc.errno == errno.EADDRNOTAVAIL:
        why, hint = ("it is not an address of this machine", "use 127.0.0.1, 0.0.0.0 (every "
                     "interface) or one of this machine's addresses (ip -brief address)")
    else:
        why, hint = (f"{exc.strerror or exc}", f"pass another address, e.g. --metrics "
                     f"{DEFAULT_HOST}:{DEFAULT_PORT}")
    return HadeployError(f"cannot serve metrics on {addr}: {why}", hint=hint,
                         code=ExitCode.BAD_INPUT)


# --- the metrics -------------------------------------------------------------------------

class WatchMetrics(WatchObserver):
    """The watcher's observer and the registry Prometheus scrapes."""

    def __init__(self, dep: Deployment, *, status: Callable[[], StatusDoc] | None = None,
                 log: Log = lambda _m: None, status_every: float = STATUS_EVERY) -> None:
        from prometheus_client import ProcessCollector, disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.dep, self.status, self.log, self.status_every = dep, status, log, status_every
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._round: RoundView | None = None
        self._doc: StatusDoc | None = None
        self._doc_at = 0.0
        self._gathered_ok = 0.0
        self._gather_seconds: float | None = None
        self._failing: set[str] = set()  # sources whose failure was logged (log once)
        self._seen: dict[tuple[str, str], float] = {}  # (vantage, region) → last probe time
        d = ["deployment"]
        reg = self.registry
        self.latency = Histogram(
            "hadeploy_probe_latency_seconds", "Latency of the probes that succeeded, per "
            "region probed and vantage point.", [*d, "region", "vantage"],
            buckets=LATENCY_BUCKETS, registry=reg)
        self.probes = Counter("hadeploy_probes", "Probes seen by watch, per region probed, "
                              "vantage point and result (ok|fail).",
                              [*d, "region", "vantage", "result"], registry=reg)
        self.failovers = Counter("hadeploy_failovers", "Failovers made by watch, per target "
                                 "region and cause (active_down|auto_failback).",
                                 [*d, "to", "cause"], registry=reg)
        self.refusals = Counter(
            "hadeploy_failover_refusals", "Failovers watch did not make, per reason: "
            "min_interval, no_healthy_region (once per episode), or the failover's error "
            "(refused|locked|failed).", [*d, "reason"], registry=reg)
        self.rounds = Counter("hadeploy_watch_rounds", "Probe rounds of watch.", d,
                              registry=reg)
        self.errors = Counter("hadeploy_gather_errors", "Failed gathers of metrics data, per "
                              "source (status|watch); watch goes on.", [*d, "source"],
                              registry=reg)
        name = dep.name
        for r in dep.regions:
            for cause in FAILOVER_CAUSES:
                self.failovers.labels(name, r.name, cause)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(name, reason)
        for source in ("status", "watch"):
            self.errors.labels(name, source)
        reg.register(_Snapshot(self))
        ProcessCollector(registry=reg)

    # -- the watcher's observer -------------------------------------------------------------

    def round(self, view: RoundView) -> None:
        try:
            self._round_metrics(view)
        except Exception as exc:  # never break the probe loop
            self._failed("watch", exc)
        else:
            self._recovered("watch")

    def _round_metrics(self, view: RoundView) -> None:
        name = self.dep.name
        for v in view.votes:
            key = (v.vantage, v.region)
            if self._seen.get(key) == v.at:
                continue  # a prober's result asked again before its next probe
            self._seen[key] = v.at
            self.probes.labels(name, v.region, v.vantage, "ok" if v.ok else "fail").inc()
            if v.ok and v.latency_ms is not None:
                self.latency.labels(name, v.region, v.vantage).observe(v.latency_ms / 1000)
        self.rounds.labels(name).inc()
        with self._lock:
            self._round = view

    def failover(self, to: str, cause: str, error: HadeployError | None) -> None:
        if error is None:
            self.failovers.labels(self.dep.name, to, cause).inc()
        else:
            reason = {ExitCode.REFUSED: "refused", ExitCode.LOCKED: "locked"}.get(
                error.code, "failed")
            self.refusals.labels(self.dep.name, reason).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(self.dep.name, reason).inc()

    # -- the slower gather --------------------------------------------------------------

    def gather(self) -> None:
        """Read the status document once; a failure is counted and logged once."""
        if self.status is None:
            return
        started = time.monotonic()
        try:
            doc = self.status()
        except Exception as exc:  # a gather never stops watch
            self._failed("status", exc)
            return
        took = time.monotonic() - started
        with self._lock:
            self._doc, self._doc_at = doc, time.time()
            self._gathered_ok, self._gather_seconds = self._doc_at, took
        self._recovered("status")

    def start(self, stop: threading.Event) -> threading.Thread:
        """Gather now, then every ``status_every`` seconds, until ``stop``."""
        def loop() -> None:
            while not stop.is_set():
                self.gather()
                stop.wait(self.status_every)

        thread = threading.Thread(target=loop, name="metrics-gather", daemon=True)
        thread.start()
        return thread

    def _failed(self, source: str, exc: Exception) -> None:
        self.errors.labels(self.dep.name, source).inc()
        if source not in self._failing:
            self._failing.add(source)
            what = exc.message if isinstance(exc, HadeployError) else \
                f"{type(exc).__name__}: {str(exc)[:200]}"
            self.log(f"metrics: gathering {source} data failed ({what}); watch goes on, "
                     "hadeploy_gather_errors_total counts further failures")

    def _recovered(self, source: str) -> None:
        if source in self._failing:
            self._failing.discard(source)
            self.log(f"metrics: gathering {source} data works again")

    def snapshot(self) -> tuple[RoundView | None, StatusDoc | None, float, float, float | None]:
        with self._lock:
            return (self._round, self._doc, self._doc_at, self._gathered_ok,
                    self._gather_seconds)


class _Families:
    """Gauge families that all carry the deployment label."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, doc: str, value: float, **labels: str) -> None:
        family = self.families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, doc, labels=["deployment", *labels])
            self.families[name] = family
        family.add_metric([self.deployment, *labels.values()], value)


class _Snapshot(Collector):
    """The gauges, built at scrape time from the last round and the last gather."""

    def __init__(self, metrics: WatchMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        view, doc, doc_at, gathered_ok, took = m.snapshot()
        out = _Families(m.dep.name)
        out.add("hadeploy_build_info", "The watch serving these metrics: its version and "
                "target.", 1, version=_version(), target=m.dep.target.value)
        _objectives(out, m.dep)
        if view is not None:
            _round_gauges(out, view)
        if m.status is not None:
            if gathered_ok:
                out.add("hadeploy_gather_last_success_timestamp_seconds", "When status data "
                        "was last gathered successfully (unix time).", gathered_ok,
                        source="status")
            if took is not None:
                out.add("hadeploy_gather_duration_seconds", "How long the last successful "
                        "gather took.", took, source="status")
        if doc is not None:
            _status_gauges(out, doc, time.time() - doc_at)
        yield from out.families.values()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hadeploy")
    except PackageNotFoundError:
        return "unknown"


def _objectives(out: _Families, dep: Deployment) -> None:
    out.add("hadeploy_objective_rto_seconds", "objectives.rto: what a drill must show.",
            dep.objectives.rto)
    out.add("hadeploy_objective_rpo_seconds", "objectives.rpo: what a drill must show.",
            dep.objectives.rpo)
    if dep.data.enabled:
        out.add("hadeploy_rpo_budget_seconds", "data.rpo_budget: the replication lag a crash "
                "failover may lose.", dep.data.rpo_budget)
        if dep.data.backup.enabled:
            out.add("hadeploy_backup_max_age_seconds", "data.backup.max_age.",
                    dep.data.backup.max_age_seconds)
            out.add("hadeploy_backup_verify_max_age_seconds", "data.backup.verify_max_age.",
                    dep.data.backup.verify_max_age_seconds)


def _round_gauges(out: _Families, view: RoundView) -> None:
    out.add("hadeploy_watch_last_round_timestamp_seconds", "When watch finished its last "
            "probe round (unix time).", view.at)
    out.add("hadeploy_dns_up", "1 when watch could read the DNS answer in its last round.",
            0 if view.dns_error else 1)
    if view.last_failover > 0:
        out.add("hadeploy_last_failover_timestamp_seconds", "The last completed failover "
                "or failback (unix time; from the audit log and this watch).",
                view.last_failover)
    for v in sorted(view.votes, key=lambda v: (v.region, v.vantage)):
        out.add("hadeploy_probe_up", "1 when the vantage point's last probe of the region "
                "succeeded (a vantage point that cannot be asked has no value).",
                1 if v.ok else 0, region=v.region, vantage=v.vantage)
    for region in view.topology.regions:
        verdict = view.verdicts.get(region.name)
        if verdict is not None:
            out.add("hadeploy_region_up", "0 when the region is down by quorum of the "
                    "vantage points, else 1.", 0 if verdict.down else 1, region=region.name)
            out.add("hadeploy_region_down_votes", "Vantage points that see the region down "
                    "(failure_threshold failures in a row).", verdict.down_votes,
                    region=region.name)
        out.add("hadeploy_region_fenced", "1 when the region is fenced (refuses writes).",
                1 if region.fenced else 0, region=region.name)
        out.add("hadeploy_region_serving_expected", "0 for a cold standby (its app hosts are "
                "stopped on purpose), else 1.", 1 if region.serving_expected else 0,
                region=region.name)
        if view.dns_error is None:
            out.add("hadeploy_active_region", "1 for the region DNS names (all 0: DNS names "
                    "no region, or several).", 1 if region.name == view.active else 0,
                    region=region.name)
    for name, state in sorted(view.data.items()):
        out.add("hadeploy_database_up", "0 when the region's database cluster is down or "
                "unknown, else 1.", 0 if state.role in ("down", "unknown") else 1,
                region=name)
        if state.lag_bytes is not None:
            out.add("hadeploy_replication_lag_bytes", "How far a standby region's database "
                    "is behind the primary region's (bytes of WAL).", state.lag_bytes,
                    region=name)
        if state.lag_seconds is not None:
            out.add("hadeploy_replication_lag_seconds", "... and in seconds (0: caught "
                    "up, else the age of the last replayed commit).", state.lag_seconds,
                    region=name)


def _status_gauges(out: _Families, doc: StatusDoc, since: float) -> None:
    """``since``: seconds since the document was read (ages keep growing)."""
    out.add("hadeploy_status_healthy", "1 when 'hadeploy status' finds the deployment "
            "healthy (last gather).", 1 if doc.healthy else 0)
    out.add("hadeploy_status_degraded", "1 when 'hadeploy status' finds it degraded (last "
            "gather).", 1 if doc.degraded else 0)
    for region in doc.regions:
        if region.backup is not None:
            _backup_gauges(out, region.name, region.backup, since)
    for drill in doc.drills:
        out.add("hadeploy_drill_objectives_met", "1 when the last drill of the scenario met "
                "the objectives.", 1 if drill.met else 0, scenario=drill.scenario)
        if drill.rto_seconds is not None:
            out.add("hadeploy_drill_rto_seconds", "The client-observed recovery time of the "
                    "last drill of the scenario.", drill.rto_seconds, scenario=drill.scenario)
        out.add("hadeploy_drill_lost_writes", "Acknowledged writes lost in the last drill "
                "of the scenario.", drill.lost_writes, scenario=drill.scenario)
        from hadeploy.state import parse_time

        try:
            out.add("hadeploy_drill_timestamp_seconds", "When the last drill of the scenario "
                    "ran (unix time).", parse_time(drill.at), scenario=drill.scenario)
        except ValueError:
            continue


def _backup_gauges(out: _Families, region: str, b: BackupStatus, since: float) -> None:
    kinds: list[tuple[str, Any]] = [("database", b)]
    if b.files is not None:
        kinds.append(("files", b.files))
    for kind, x in kinds:
        if x.last_backup_age_seconds is not None:
            out.add("hadeploy_backup_age_seconds", "Age of the newest good backup, per region "
                    "and kind (database|files).", x.last_backup_age_seconds + since,
                    region=region, kind=kind)
        if x.last_verify_age_seconds is not None:
            out.add("hadeploy_backup_verify_age_seconds", "Age of the last restore test.",
                    x.last_verify_age_seconds + since, region=region, kind=kind)
        if x.last_verify_ok is not None:
            out.add("hadeploy_backup_verify_ok", "1 when the last restore test succeeded.",
                    1 if x.last_verify_ok else 0, region=region, kind=kind)
    out.add("hadeploy_backup_problems", "Why the region's backups degrade the deployment "
            "(count; 'hadeploy status' names them).", len(b.problems), region=region)
