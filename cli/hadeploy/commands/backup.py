"""``hadeploy backup run|list|verify`` and ``hadeploy restore``: the database's backups."""

from __future__ import annotations

import json
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
    stderr_console,
)
from hadeploy.errors import ExitCode, HadeployError

app = typer.Typer(help="Database backups: take one, list them, prove one restores.",
                  no_args_is_help=True)
RegionOpt = Annotated[str | None, typer.Option(
    "--region", help="Whose repository (default: the writable region's; 'run' without it: "
    "every region's).")]
KINDS = ("full", "diff", "incr")


def _runtime(config: Any, deployment: Any, state_dir: Any, *, command: str,
             instead: str) -> Any:
    """The deployment, its state and runtime, for a command that runs pgBackRest on the
    hosts; ``instead``: what a target without host commands (aws) offers."""
    from hadeploy import targets
    from hadeploy.config import Target

    dep, state = resolve(config, None, deployment, state_dir)
    if dep.target is not Target.LAB:  # asked before "is it built?": it never will be
        raise HadeployError(
            f"'hadeploy {command}' drives pgBackRest on the lab's hosts; target "
            f"{dep.target.value} {instead}", hint="see docs/aws.md", code=ExitCode.NOT_AVAILABLE)
    require_built(dep, state)
    runtime = targets.for_deployment(dep, state).runtime()
    assert runtime.host_run is not None  # the lab runs commands with podman exec
    return dep, state, runtime


def _hosts(config: Any, deployment: Any, state_dir: Any) -> Any:
    from hadeploy.backup import BackupHosts

    dep, state, runtime = _runtime(
        config, deployment, state_dir, command="backup",
        instead="keeps its backups in AWS Backup and Aurora (restore testing plans are the "
        "counterpart of 'verify')")
    return dep, state, BackupHosts(runtime.topology(), runtime.host_run)


def _emit(doc: Any, json_out: bool, ok: bool, line: str) -> None:
    if json_out:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        stderr_console().print(line)
    if not ok:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command("run")
def run(
    kind: Annotated[str, typer.Option("--type", help="full, diff or incr.")] = "full",
    region: RegionOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Take a backup now (into every region's repository, or --region's), with its marker;
    then back each region's shared storage up (restic, to another region).

    Exit 0 when every backup succeeded, 1 when one failed (its error is printed).

    Example:  hadeploy backup run --type diff
    """
    if kind not in KINDS:
        raise HadeployError(f"--type {kind[:40]!r} is not a backup type",
                            hint="use full, diff or incr", code=ExitCode.BAD_INPUT)
    from hadeploy.topology import files_backed_up

    _dep, state, hosts = _hosts(config, deployment, state_dir)
    regions = [hosts.region(region)] if region else hosts.regions()
    # One after the other: pgBackRest takes one backup of a stanza at a time.
    results = {}
    for where in regions:
        try:
            results[where.name] = hosts.call(where, kind)
        except HadeployError as exc:
            results[where.name] = {"ok": False, "error": exc.message}
    for where in regions:
        if not files_backed_up(where):
            results[where.name]["files"] = {"ok": True, "skipped": "a cold standby region: "
                                            "no app host runs, nothing is written"}
            continue
        try:
            results[where.name]["files"] = hosts.call(where, "run", files=True)
        except HadeployError as exc:
            results[where.name]["files"] = {"ok": False, "error": exc.message}
    ok = all(r.get("ok") and r["files"].get("ok") for r in results.values())
    state.audit("backup", type=kind, regions=sorted(results), ok=ok,
                labels={n: r.get("label") for n, r in results.items()},
                snapshots={n: r["files"].get("snapshot") for n, r in results.items()})
    lines = []
    for name, r in results.items():
        files = r["files"]
        lines.append(f"{name}: " + (f"[green]{r['label']}[/] ({r.get('size', 0) / 1e6:.1f} MB,"
                                    f" {r.get('seconds', 0):.1f} s)" if r.get("ok")
                                    else f"[red]failed[/]: {r.get('error', '')[:400]}")
                     + ("; files " + ("skipped (" + files["skipped"] + ")" if files.get(
                         "skipped") else f"[green]{files.get('snapshot')}[/] "
                         f"({files.get('files')} files, {files.get('seconds', 0):.1f} s)"
                         if files.get("ok") else
                         f"[red]failed[/]: {files.get('error', '')[:300]}")))
    _emit(results, json_out, ok, "\n".join(lines))


@app.command("list")
def list_(
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """List every repository's backups: where, when, size, marker, restore test.

    Example:  hadeploy backup list --json
    """
    _dep, _state, hosts = _hosts(config, deployment, state_dir)
    repos = hosts.each("list")
    for name, files in hosts.each("last", files=True).items():
        repos[name]["files"] = files
    lines = []
    for name, repo in repos.items():
        if repo.get("error"):
            lines.append(f"{name}: [red]unavailable[/] ({repo['error'][:200]})")
            continue
        lines.append(f"{name} (repository {repo.get('repo')}, stanza {repo.get('stanza')}):")
        for b in repo.get("backups", []):
            verified = b.get("verified") or {}
            check = ("verified" if verified.get("ok") else "VERIFY FAILED"
                     if verified.get("ok") is False else "not verified")
            lines.append(f"  {b['label']}  {b['type']:<4}  {b['size'] / 1e6:8.1f} MB  "
                         f"{check}")
        if not repo.get("backups"):
            lines.append("  (no backup)")
        if "files" not in repo:
            continue
        good = (repo.get("files") or {}).get("last_good_backup") or {}
        checked = (repo.get("files") or {}).get("last_verify") or {}
        tested = "ok" if checked.get("ok") else "FAILED" if checked else "never"
        lines.append(f"  files: snapshot {good.get('snapshot', '-')} of "
                     f"{good.get('finished_at', 'never')} in {good.get('repository', '-')}, "
                     f"restore test {tested}")
    _emit({"repositories": repos}, json_out, True, "\n".join(lines))


@app.command("verify")
def verify(
    label: Annotated[str | None, typer.Option(
        "--set", help="The backup to test (a label from 'backup list'; default: newest).")
    ] = None,
    region: RegionOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Prove a backup restores: into a scratch server on the backup host, recovered to its
    marker; the marker row and a hash of every item must match what was recorded at backup
    time, and pg_amcheck --heapallindexed must find nothing. Records each step's time. Then
    the region's newest files snapshot: restic check --read-data and a verified restore.

    Exit 0 when both are proven, 1 when not (damaged, missing WAL, different data).

    Example:  hadeploy backup verify --region west
    """
    if label is not None and not label.replace("-", "").replace("_", "").isalnum():
        raise HadeployError(f"--set {label[:40]!r} is not a backup label",
                            hint="copy one from 'hadeploy backup list'",
                            code=ExitCode.BAD_INPUT)
    from hadeploy.topology import files_backed_up

    _dep, state, hosts = _hosts(config, deployment, state_dir)
    where = hosts.region(region)
    doc = hosts.call(where, "verify", *([label] if label else []))
    try:
        doc["files"] = hosts.call(where, "verify", files=True) if files_backed_up(where) \
            else {"ok": True, "skipped": "a cold standby region keeps no files backup"}
    except HadeployError as exc:
        doc["files"] = {"ok": False, "error": exc.message}
    files_ok = bool(doc["files"].get("ok"))
    state.audit("backup-verify", region=where.name, label=doc.get("label"),
                ok=bool(doc.get("ok")), error=doc.get("error"), files_ok=files_ok)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in (doc.get("steps") or {}).items())
    line = (f"[green]verified[/] {doc.get('label')} in {where.name}: "
            f"{(doc.get('restored') or {}).get('items')} items match the marker ({steps})"
            if doc.get("ok") else f"[red]verification FAILED[/] ({where.name}, "
            f"{doc.get('label')}): {doc.get('error')}")
    files = doc["files"]
    line += ("\n" + (f"[green]verified[/] files snapshot {files.get('snapshot')}: "
                     f"{files.get('files')} files restored and checked" if files_ok else
                     f"[red]files verification FAILED[/]: {files.get('error')}"))
    _emit(doc, json_out, bool(doc.get("ok")) and files_ok, line)


def restore(
    time_value: Annotated[str | None, typer.Option(
        "--time", help="Recover to this moment (ISO 8601; UTC unless it has an offset).")
    ] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Recover to this named restore point.")] = None,
    to_scratch: Annotated[bool, typer.Option(
        "--to-scratch", help="Restore into a scratch server on the backup host for "
        "inspection; production is not touched.")] = False,
    region: RegionOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")] = "",
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Point-in-time recovery of the database, in place: the writable region's leader is
    restored from the backups to --time or --name, every other member and region is
    re-seeded from it. DNS and the app are untouched; writes fail while it runs.

    Everything written after the target is discarded from the live database (the WAL of
    the old timeline stays in the archive). Takes the deployment lock; asks on a terminal
    unless --yes and refuses without one; audited. A failed run leaves the databases paused
    and is finished by running the same command again.

    Example:  hadeploy restore --time 2026-11-28T17:05:00Z --reason "items deleted" --yes
    """
    from hadeploy.backup import BackupHosts
    from hadeploy.data import Clusters
    from hadeploy.restore import PointInTimeRestore, RestoreTarget
    from hadeploy.topology import HostKind

    target = RestoreTarget.parse(time_value, name)
    dep, state, runtime = _runtime(
        config, deployment, state_dir, command="restore",
        instead="restores an Aurora cluster to a point in time with AWS's own restore")
    topo = runtime.topology()
    console = stderr_console()
    hosts = BackupHosts(topo, runtime.host_run)
    hosts.region(None)  # refuses a deployment without backups
    target.check_reachable(hosts.each("list"))
    if to_scratch:
        where = hosts.region(region)
        doc = hosts.call(where, "scratch", target.scratch_arg())
        state.audit("restore-scratch", region=where.name, target=target.describe(),
                    ok=bool(doc.get("ok")), reason=reason)
        host = where.of_kind(HostKind.BACKUP)[0].name
        _emit({**doc, "region": where.name, "host": host}, json_out, bool(doc.get("ok")),
              f"[green]restored[/] to {target.describe()} into the scratch server on {host}; "
              f"inspect it with: podman exec -it -u postgres {host} {doc.get('connect', '')}"
              if doc.get("ok") else f"[red]scratch restore failed[/]: {doc.get('error')}")
        return
    data = runtime.region_ops(topo).data
    if not isinstance(data, Clusters):
        raise HadeployError("this deployment has no database tier to restore",
                            code=ExitCode.BAD_INPUT)
    primary = topo.data_primary_region
    assert primary is not None
    confirm(f"Restore the database of '{dep.name}' to {target.describe()}? Everything "
            f"written after it is discarded; {primary.name} is restored and every other "
            "region re-seeded, and writes fail until it is done.", yes)
    with state.lock("restore"):
        state.audit("restore-start", target=target.describe(), region=primary.name,
                    reason=reason)
        try:
            report = PointInTimeRestore(topo, data,
                                        log=lambda m: console.print(f"[dim]·[/] {m}")
                                        ).restore(target)
        except HadeployError as exc:
            state.audit("restore", target=target.describe(), ok=False, error=exc.message)
            raise
        state.audit("restore", ok=True, **report.to_dict())
    _emit(report.to_dict(), json_out, True,
          f"[green]restored[/] {primary.name} to {target.describe()}: "
          f"{report.restored.get('items')} items, timeline {report.restored.get('timeline')}"
          f"; re-seeded {', '.join(report.reseeded) or 'no other region'} "
          f"({sum(report.steps.values()):.0f} s)"
          + "".join(f"\n[yellow]note[/]: {n}" for n in report.notes))
