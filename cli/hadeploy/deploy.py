"""``up`` and ``down``: provision through the target, configure through Ansible, point DNS
at the primary region if nothing points anywhere yet. Commands render; this module acts.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hadeploy.config import Deployment, Target
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir
from hadeploy.topology import Topology

Log = Callable[[str], None]
TaskCallback = Callable[[str, int], None]


@dataclass
class UpReport:
    deployment: str
    topology: Topology
    created: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    unmanaged_regions: list[str] = field(default_factory=list)
    configured: bool = False
    configure_reason: str = ""
    ansible: dict[str, Any] | None = None
    dns_answer: list[str] = field(default_factory=list)
    dns_changed: bool = False
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.started or self.recreated or self.stopped
                    or self.dns_changed
                    or (self.ansible and self.ansible["changed"]))

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "changed": self.changed,
                "created": self.created, "started": self.started,
                "recreated": self.recreated, "stopped": self.stopped,
                "unmanaged_regions": self.unmanaged_regions,
                "configured": self.configured, "configure_reason": self.configure_reason,
                "ansible": self.ansible,
                "dns": {"record": self.topology.dns.fqdn, "answer": self.dns_answer,
                        "changed": self.dns_changed},
                "seconds": round(self.seconds, 1)}


def require_target_available(dep: Deployment, command: str = "this command") -> None:
    """The aws target provisions (up, plan, down); operating it is not wired yet."""
    if dep.target is Target.AWS:
        raise HadeployError(
            f"{command} is not available for the 'aws' target yet",
            hint="on AWS, hadeploy builds and destroys the stacks (up, plan, down); status, "
            "failover and watch run on the lab target for now (docs/aws.md)",
            code=ExitCode.NOT_AVAILABLE)


def aws_target(dep: Deployment, log: Log) -> Any:
    from hadeploy.targets.aws.driver import AwsTarget, list_hosts_boto3

    return AwsTarget(dep, log=log, host_lister=list_hosts_boto3)


def up_aws(dep: Deployment, state: StateDir, *, yes: bool, log: Log,
           confirm: Callable[[str], None]) -> dict[str, Any]:
    """Preview, confirm (unless --yes), then the regional stacks and the global stack."""
    target = aws_target(dep, log)
    with state.lock("up"):
        preview = target.preview()
        preview.raise_for_failures()
        for stack in preview.stacks:
            log(f"preview {stack.stack}: {stack.changes}")
        if not yes:
            confirm(f"Apply these changes to {len(preview.stacks)} stack(s)?")
        report = target.up()
        report.raise_for_failures()
        state.save_deployment(dep)
        if report.topology is not None:
            state.save_json("topology.json", report.topology.to_dict())
        if report.operate is not None:
            state.save_json("aws.json", report.operate)
        state.append_audit({"operation": "up", "target": "aws", "user": getpass.getuser(),
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "stacks": [s.stack for s in report.stacks]})
        return dict(report.to_dict())


def up(dep: Deployment, state: StateDir, *, converge: bool = False, log: Log = print,
       on_task: TaskCallback = lambda _t, _n: None) -> UpReport:
    require_target_available(dep)
    from hadeploy import configure
    from hadeploy.targets.lab.driver import LabTarget, connection_vars
    from hadeploy.topology import lab_topology

    start = time.monotonic()
    with state.lock("up"):
        state.save_deployment(dep)  # first, so that 'down' can clean up a failed 'up'
        target = LabTarget(dep, state.path, log,
                           topology=lab_topology(dep, **state.region_flags()))
        prov = target.provision()
        topo = prov.topology
        state.save_json("topology.json", topo.to_dict())
        report = UpReport(dep.name, topo, prov.created, prov.started, prov.recreated,
                          prov.unmanaged_regions)

        connection = connection_vars(state.path)
        inventory = configure.write_inventory(topo, dep, state.path, connection)
        wanted = configure.region_fingerprints(topo, dep, "site.yml", connection)
        reasons = _regions_to_configure(topo, dep, state, prov, wanted, converge)
        if reasons:
            report.configure_reason = "; ".join(f"{r}: {why}" for r, why in reasons.items())
            hosts = sum(len(topo.region(r).hosts) for r in reasons)
            log(f"configuring {hosts} hosts of {', '.join(reasons)} "
                f"({report.configure_reason})")
            limit = None if len(reasons) == len(topo.regions) else ",".join(
                configure.region_group(r) for r in reasons)
            # Standby hosts are configured like the others, then stopped again below.
            report.started += [f"container {n}" for n in target.set_running(
                [h for r in reasons for h in topo.region(r).hosts if h.standby], True)]
            result = configure.run_playbook(inventory, state.path, "site.yml", limit=limit,
                                            on_task=on_task)
            report.configured = True
            report.ansible = result.to_dict()
            if result.rc != 0 or result.failures:
                raise HadeployError(
                    "configuration failed:\n  " + "\n  ".join(result.failures or
                                                              [f"rc={result.rc}"]),
                    hint=f"fix the cause and re-run 'hadeploy up' (it converges); Ansible's "
                    f"artifacts are in {state.path / 'ansible'}", code=ExitCode.FAILED)
            configure.save_fingerprints(state.path, {r: wanted[r] for r in reasons})

        report.stopped = target.set_running(
            [h for r in topo.regions for h in r.hosts if h.standby], False)
        for name in report.stopped:
            log(f"stopped standby host {name}")
        report.dns_answer, report.dns_changed = _ensure_dns_record(topo, dep, state, log)
        report.seconds = time.monotonic() - start
        state.append_audit({"operation": "up", "user": getpass.getuser(),
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "changed": report.changed, "seconds": round(report.seconds, 1),
                            "regions": [r.name for r in topo.regions]})
        return report


def _regions_to_configure(topo: Topology, dep: Deployment, state: StateDir, prov: Any,
                          wanted: dict[str, str], converge: bool) -> dict[str, str]:
    """Which regions need an Ansible run, and why (region → reason)."""
    from hadeploy import configure, status
    from hadeploy.targets.lab.driver import container_states

    if converge:
        return {r.name: "--converge" for r in topo.regions}
    touched = set(prov.created) | set(prov.started) | set(prov.recreated)
    done = configure.load_fingerprints(state.path)
    reasons: dict[str, str] = {}
    for region in topo.regions:
        if any(f"container {h.name}" in touched for h in region.hosts):
            reasons[region.name] = "hosts created or restarted"
        elif done.get(region.name) != wanted[region.name]:
            reasons[region.name] = "configuration changed"
    rest = [r for r in topo.regions if r.name not in reasons]
    if rest:
        live = status.collect(topo, dep, state.path, container_states=container_states(dep.name))
        for region in live["regions"]:
            sick = [h["name"] for h in region["hosts"] if not h["healthy"] and not h["standby"]]
            if region["name"] not in reasons and sick:
                reasons[region["name"]] = f"unhealthy: {', '.join(sick)}"
    return reasons


def _ensure_dns_record(topo: Topology, dep: Deployment, state: StateDir,
                       log: Log) -> tuple[list[str], bool]:
    """Point the app record at the primary only if it points at no known region.

    ``up`` never moves traffic: after a failover the record names another region, and a
    later ``up`` must leave it there (moving traffic is ``hadeploy failover``'s job).
    """
    from hadeploy.status import dns_provider

    provider = dns_provider(topo, state.path)
    provider.wait_ready()
    answer = provider.read(topo.dns.record)
    if any(topo.region_of_address(a) for a in answer):
        return answer, False
    primary = topo.region(dep.primary.name)
    log(f"pointing {topo.dns.fqdn} at {primary.name} ({primary.vip})")
    provider.replace(topo.dns.record, topo.dns.ttl, [primary.vip])
    provider.wait_visible(topo.dns.record, [primary.vip])
    return [primary.vip], True


def down(dep: Deployment, state: StateDir, *, log: Log = print) -> list[str]:
    from hadeploy.targets.lab.driver import destroy

    with state.lock("down"):
        if dep.target is Target.AWS:
            report = aws_target(dep, log).destroy()
            report.raise_for_failures()
            removed = [f"stack {s.stack}" for s in report.stacks]
        else:
            removed = destroy(dep.name, log)
        state.clear()
        state.append_audit({"operation": "down", "user": getpass.getuser(),
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "removed": len(removed)})
        return removed
