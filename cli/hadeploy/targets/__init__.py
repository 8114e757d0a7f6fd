"""The one Target interface, and the one place that picks a target for a deployment.

A target turns the desired state into running infrastructure and operates it:

- :meth:`Target.desired` — the objects the deployment needs (networks, containers,
  stacks, the configuration of each region, the DNS record …);
- :meth:`Target.live` — what exists now; :meth:`Target.diff` — the changes that would
  make the live state the desired one. ``plan`` prints this list and ``up`` applies this
  same list, so the two cannot disagree;
- :meth:`Target.check_drift` — (``--drift``) how the hosts differ from what the roles make
  them, by Ansible's check mode; the regions that differ are configured again;
- :meth:`Target.apply`, :meth:`Target.destroy`, :meth:`Target.topology`;
- :meth:`Target.runtime` — what ``status``, ``failover`` and ``watch`` operate on: the
  topology, the DNS provider, the region operations and any extra vantage points. It
  never needs the provisioning engine (no pulumi, no ansible), so the failover path works
  while a region and its control plane are gone.

Implementations: :mod:`hadeploy.targets.lab.target` (podman) and
:mod:`hadeploy.targets.aws.target` (Pulumi Automation API). Both are imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from hadeploy.config import Deployment
    from hadeploy.configure import DriftItem
    from hadeploy.data import Archiving, DataState, HostRun, Integrity, Slot
    from hadeploy.dns.base import DnsProvider
    from hadeploy.quorum import Vote
    from hadeploy.state import StateDir
    from hadeploy.status import StatusDoc
    from hadeploy.topology import RegionTopology, Topology

Log = Callable[[str], None]
LiveT = TypeVar("LiveT")


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Desired:
    """One object the deployment needs."""

    # image | key | network | volume | container | firewall | configuration | record | stack
    kind: str
    name: str
    region: str | None = None
    spec: str = ""  # a digest (or value) of what it must look like
    running: bool = True  # containers: the state 'up' leaves them in
    detail: str = ""  # for humans: subnet, address, role


@dataclass(frozen=True)
class Change:
    """One step that makes the live state the desired one."""

    action: str  # build | create | recreate | start | stop | configure | point | update
    kind: str
    name: str
    region: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.name}" + (f" ({self.detail})"
                                                           if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "region": self.region, "detail": self.detail}


@dataclass
class Drift:
    """How the hosts differ from what the roles make them (Ansible's check mode)."""

    items: dict[str, list[DriftItem]] = field(default_factory=dict)  # region → what differs
    checked: list[str] = field(default_factory=list)  # the hosts that were compared
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # hosts that could not be compared

    @property
    def found(self) -> bool:
        return any(self.items.values())

    def to_dict(self) -> dict[str, Any]:
        return {"found": self.found, "checked": self.checked, "seconds": round(self.seconds, 1),
                "problems": self.problems,
                "items": [{"region": r, **i.to_dict()} for r, items in self.items.items()
                          for i in items]}


@dataclass
class Plan:
    """The changes ``up`` would make, and notes that are not changes."""

    target: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    drift: Drift | None = None  # None: the hosts were not compared (no --drift)

    def of(self, *actions: str, kind: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.action in actions
                and (kind is None or c.kind == kind)]


@dataclass
class ApplyHooks:
    """How a target reports progress while it applies a plan."""

    log: Log = _quiet
    on_task: Callable[[str, int], None] = lambda _task, _n: None


class ApplyReport(Protocol):
    @property
    def changed(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...

    def summary(self) -> list[str]:
        """Lines for humans (rich markup allowed)."""


class DataOps(Protocol):
    """What a target can do with the database tier during a failover (lab and VMs: the
    regions' Patroni clusters, :class:`hadeploy.data.Clusters`)."""

    def observe(self) -> dict[str, DataState]:
        """Every region's cluster now: role, leader, positions, lag."""

    def wait_streaming(self, new: RegionTopology, timeout: float) -> float:
        """Before a switchover: wait until ``new``'s database receives the primary's WAL
        as it is written (the old primary's last write reaches it only then); seconds
        waited. HadeployError(REFUSED) when it does not within ``timeout``."""

    def freeze(self, old: RegionTopology) -> int:
        """Stop writes in the old primary region cleanly; its demotion token."""

    def switch(self, old: RegionTopology, new: RegionTopology, token: int) -> float:
        """Promote ``new`` once it replayed past ``token``; seconds until it takes writes."""

    def promote(self, new: RegionTopology) -> float:
        """Promote ``new`` without its source (a crash failover)."""

    def settle(self, region: RegionTopology, primary: RegionTopology, *,
               salvage: bool, wait: float = 0.0) -> str | None:
        """Put a region's cluster in its role: resume the data primary if it came back
        paused; make any other region a standby of ``primary`` (copying diverged data aside
        first when ``salvage``). What was done, or None if nothing was needed."""

    def slots(self, region: RegionTopology, leader: str) -> list[Slot]:
        """The replication slots on a region's leader and the WAL each one retains."""

    def integrity(self, region: RegionTopology, leader: str) -> Integrity:
        """The last corruption check on a region's leader and its checksum failures."""

    def archiving(self, region: RegionTopology, leader: str) -> Archiving:
        """WAL archiving on a region's leader: whether segments reach the repositories."""


@dataclass(frozen=True)
class Fenced:
    """What fencing a region did. ``certain``: every load balancer of the region refuses
    writes now, or is known not to run; otherwise the region may still take writes (it
    could not be reached) until its own lease runs out."""

    text: str
    certain: bool

    def __str__(self) -> str:
        return self.text


class RegionOps(Protocol):
    """What a target can do to one region during a failover (lab: podman + haproxy;
    aws: Auto Scaling + ALB listener rules)."""

    # Seconds ``prepare`` may wait for a started standby (lab: 60; aws: instances boot).
    prepare_timeout: float

    @property
    def data(self) -> DataOps | None:
        """The database tier's moves; None when the deployment has no database tier."""

    def prepare(self, region: RegionTopology, timeout: float) -> list[str]:
        """Make a warm/cold target serve and lift its fence; the actions taken."""

    # Self-fencing: the seconds within which a region that can no longer confirm it is the
    # writer (the DNS writer record) refuses writes on its own (lab: each load balancer's
    # lease agent); None when the target's regions do not fence themselves (aws).
    lease: float | None

    def wait_writable(self, region: RegionTopology, timeout: float) -> str:
        """After a failover's DNS change named ``region`` the writer: wait until it lets
        writes through (its lease agents saw the record); what happened ('' if nothing
        to wait for)."""

    def fence(self, region: RegionTopology, timeout: float) -> Fenced:
        """Make the region refuse writes (recorded first, then applied); what happened."""


# More vantage points than this machine and the probers (aws: Route 53's health checkers).
ExtraVotes = Callable[["Topology"], list["Vote"]]


@dataclass
class Runtime:
    """What ``status``, ``failover``/``failback`` and ``watch`` operate on."""

    topology: Callable[[], Topology]
    dns: Callable[[Topology], DnsProvider]
    region_ops: Callable[[Topology], RegionOps]
    status: Callable[[float], StatusDoc]
    extra_votes: ExtraVotes | None = None
    # Runs a command on a host (lab: podman exec): backups and restores drive the database
    # and backup hosts with it. None: the target's hosts are not reachable that way (aws).
    host_run: HostRun | None = None
    # Starts stopped containers by name, a DNS server with the newest zone first (lab).
    start: Callable[[list[str]], None] | None = None


class Target(Protocol, Generic[LiveT]):
    dep: Deployment
    state: StateDir
    confirm_apply: bool  # ask before applying on a terminal (aws: like 'pulumi up')

    def desired(self) -> list[Desired]: ...

    def live(self) -> LiveT: ...

    def diff(self, desired: list[Desired], live: LiveT, *, converge: bool = False) -> Plan:
        """``converge``: configure every region even when nothing seems changed."""

    def check_drift(self, live: LiveT) -> Drift:
        """Compare the hosts with what the roles make them (nothing changes on them); what
        differs is kept in ``live`` for :meth:`diff`, which configures those regions."""

    def apply(self, plan: Plan, hooks: ApplyHooks) -> ApplyReport: ...

    def destroy(self, log: Log, *, delete_backups: bool = False) -> list[str]:
        """Remove what the deployment created. Backups (and what restoring them needs)
        are kept unless ``delete_backups``."""

    def topology(self) -> Topology: ...

    def runtime(self) -> Runtime: ...


def plan(target: Target[Any], *, converge: bool = False, drift: bool = False) -> Plan:
    """The changes ``up`` would make: the diff of the desired objects against the live
    state. Read-only; ``plan`` prints it, ``up`` applies it. ``drift``: compare the hosts'
    configuration too (slower: an Ansible run in check mode)."""
    live = target.live()
    found = target.check_drift(live) if drift else None
    result = target.diff(target.desired(), live, converge=converge)
    result.drift = found
    return result


def for_deployment(dep: Deployment, state: StateDir, *, log: Log = _quiet) -> Target[Any]:
    """The target of ``dep`` — the one place that dispatches on ``dep.target``."""
    from hadeploy.config import Target as Kind

    if dep.target is Kind.AWS:
        from hadeploy.targets.aws.target import AwsTarget

        return AwsTarget(dep, state, log=log)
    from hadeploy.targets.lab.target import LabTarget

    return LabTarget(dep, state, log=log)
