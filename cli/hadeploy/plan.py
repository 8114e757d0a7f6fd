"""What ``up`` would change, computed without changing anything (for pull requests)."""

from __future__ import annotations

import shutil
from typing import Any

from hadeploy.config import Deployment, Target
from hadeploy.state import StateDir


def compute(dep: Deployment, state: StateDir) -> dict[str, Any]:
    doc: dict[str, Any] = {"deployment": dep.name, "target": dep.target.value, "valid": True,
                           "regions": [r.name for r in dep.regions],
                           "primary": dep.primary.name, "changes": [], "notes": []}
    if dep.target is Target.AWS:
        from hadeploy.deploy import aws_target

        report = aws_target(dep, lambda _m: None).preview()
        report.raise_for_failures()
        doc["changes"] = [f"{s.stack}: {s.changes}" for s in report.stacks
                          if any(k != "same" and v for k, v in (s.changes or {}).items())]
        doc["notes"] += report.notes
        return doc
    from hadeploy import configure
    from hadeploy.targets.lab import image, podman
    from hadeploy.targets.lab.driver import connection_vars
    from hadeploy.topology import lab_control_network, lab_dns_container, lab_topology

    topo = lab_topology(dep, **state.region_flags())
    if shutil.which("podman") is None:
        doc["notes"].append("podman is not installed: every object would be created")
        existing: dict[str, Any] = {}
        nets: set[str] = set()
        vols: set[str] = set()
    else:
        existing = {c["Names"][0]: c for c in podman.containers(dep.name)}
        nets = {n["name"] for n in podman.networks(dep.name)}
        vols = {v["Name"] for v in podman.volumes(dep.name)}
        if podman.image_labels(image.image_ref()) is None:
            doc["changes"].append(f"build image {image.image_ref()}")
    changes = doc["changes"]
    if lab_control_network(dep.name) not in nets:
        changes.append(f"create network {lab_control_network(dep.name)} "
                       f"({dep.lab.control_subnet})")
    dns = lab_dns_container(dep.name)
    if dns not in existing:
        changes.append(f"create container {dns} (knotd, {topo.dns.server})")
    for region in topo.regions:
        net = f"hd-{dep.name}-{region.name}"
        if net not in nets:
            changes.append(f"create network {net} ({region.subnet})")
        if region.storage.source not in vols:
            changes.append(f"create volume {region.storage.source}")
        for host in region.hosts:
            if host.name not in existing:
                changes.append(f"create container {host.name} ({host.kind}, {host.address})")
            elif existing[host.name].get("State") != "running":
                changes.append(f"start container {host.name}")
    desired = {h.name for r in topo.regions for h in r.hosts} | {dns}
    extra = sorted(set(existing) - desired)
    if extra:
        doc["notes"].append(f"not in the desired state, left alone by 'up': {', '.join(extra)}")
    done = configure.load_fingerprints(state.path)
    connection = connection_vars(state.path)
    fingerprints = configure.region_fingerprints(topo, dep, "site.yml", connection)
    for name, fingerprint in fingerprints.items():
        if done.get(name) != fingerprint:
            changes.append(f"configure region {name} with Ansible (its configuration "
                           "differs from the last converged one)")
    return doc
