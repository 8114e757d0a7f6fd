"""``hadeploy plan``: validate the desired state and show what ``up`` would change."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer

from hadeploy.commands._common import (
    ConfigOpt,
    DeploymentOpt,
    JsonOpt,
    RegionsOpt,
    StateDirOpt,
    TargetOpt,
    resolve,
)


class Format(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


FormatOpt = Annotated[Format, typer.Option(
    "--format", help="text, json (as --json) or markdown (for a pull request comment).",
    case_sensitive=False)]


def plan(
    config: ConfigOpt = None,
    regions: RegionsOpt = None,
    target: TargetOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
    converge: bool = typer.Option(
        False, "--converge", help="Plan as 'up --converge' would (every region configured)."),
    drift: bool = typer.Option(
        False, "--drift", help="Also compare every running host with what the roles make it "
        "(Ansible's check mode, nothing changes on the hosts); the regions that differ are "
        "configured by 'up --drift'."),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 8 when 'up' would change something (or "
        "drift was found), 0 when in sync; errors keep their own codes."),
    output: FormatOpt = Format.TEXT,
    json_out: JsonOpt = False,
) -> None:
    """Validate the desired state and list what 'up' would change.

    The list is the one 'up' applies: the desired objects diffed against what exists. Read-only
    (no lock, no file written): safe on a pull request.

    Example:  hadeploy plan --config hadeploy.yaml --detailed-exitcode --format markdown
    """
    from hadeploy import targets
    from hadeploy.errors import ExitCode

    dep, state = resolve(config, regions, deployment, state_dir, for_up=True, target=target)
    result = targets.plan(targets.for_deployment(dep, state), converge=converge, drift=drift)
    doc = {"deployment": dep.name, "target": dep.target.value, "valid": True,
           "regions": [r.name for r in dep.regions], "primary": dep.primary.name,
           "changes": [str(c) for c in result.changes],
           "items": [{**c.to_dict(), "downtime": downtime(c)} for c in result.changes],
           "notes": result.notes,
           "drift": result.drift.to_dict() if result.drift is not None else None}
    if json_out or output is Format.JSON:
        typer.echo(json.dumps(doc, indent=2))
    elif output is Format.MARKDOWN:
        typer.echo(markdown(doc))
    else:
        _text(doc)
    pending = bool(result.changes) or (result.drift is not None and result.drift.found)
    if detailed_exitcode and pending:
        raise typer.Exit(int(ExitCode.CHANGES))


def downtime(change: Any) -> str:
    """What a change costs the clients, from how ``up`` applies it."""
    if change.action == "configure":
        return "none: restarts roll one host at a time, the standby regions first"
    if change.action == "recreate" and change.kind == "container":
        return ("possible while this region serves: the host is replaced, not rolled "
                "(hosts of a region are replaced together)")
    if change.action == "update" and change.kind == "stack":
        return ("see the preview: replaced resources can interrupt; instance refreshes "
                "keep a minimum healthy percentage")
    if change.action == "point":
        return "none: the name starts to answer"
    if change.action == "remove" and change.kind == "container":
        return "none: the other DNS servers answer (it left the NS set first)"
    return "none"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    """The plan as a pull-request comment: what changes per region, what it costs in
    downtime, the drift found on the hosts (with diffs), the notes."""
    items, drift = doc["items"], doc["drift"]
    title = f"### hadeploy plan: `{doc['deployment']}` ({doc['target']})"
    if not items and not (drift and drift["found"]):
        checked = " and drift on every running host" if drift is not None else ""
        lines = [title, "", f"**No changes**: `up` would do nothing (desired state{checked} "
                 "compared)."]
    else:
        touching = [i for i in items if not i["downtime"].startswith("none")]
        cost = ("**none expected**: every change rolls host by host or touches no serving "
                "host" if not touching else f"**{len(touching)} change(s) may interrupt "
                "clients** (see the last column)")
        lines = [title, "", f"**{len(items)} change(s)**; downtime: {cost}.", ""]
        if items:
            lines += ["| region | action | object | detail | downtime |",
                      "|---|---|---|---|---|"]
            for i in sorted(items, key=lambda i: (i["region"] or "", i["kind"], i["name"])):
                lines.append(f"| {_cell(i['region'] or '(shared)')} | {i['action']} | "
                             f"{_cell(i['kind'])} `{_cell(i['name'])}` | {_cell(i['detail'])}"
                             f" | {_cell(i['downtime'])} |")
    if drift is not None and drift["found"]:
        lines += ["", f"#### Drift: {len(drift['items'])} difference(s) on the hosts "
                  "(`up --drift` puts them back)", ""]
        for d in drift["items"]:
            where = f" (`{d['path']}`)" if d["path"] else ""
            lines.append(f"- **{d['region']}** `{d['host']}`: {_cell(d['task'])}{where}")
            if d["diff"]:
                lines += ["  <details><summary>diff</summary>", "", "  ```diff",
                          *(f"  {line}" for line in d["diff"].splitlines()), "  ```",
                          "  </details>"]
    if drift is not None and drift["problems"]:
        lines += ["", "Not compared: " + "; ".join(_cell(p) for p in drift["problems"])]
    if doc["notes"]:
        lines += ["", *(f"> {_cell(n)}" for n in doc["notes"])]
    return "\n".join(lines)


def _text(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False)
    out.print(f"deployment [bold]{doc['deployment']}[/] target {doc['target']}: "
              f"{len(doc['regions'])} region(s), primary {doc['primary']}")
    marks = {"create": "[green]+[/]", "build": "[green]+[/]", "recreate": "[red]±[/]",
             "remove": "[red]-[/]"}
    for item, change in zip(doc["items"], doc["changes"], strict=True):
        out.print(f"  {marks.get(item['action'], '[yellow]~[/]')} {escape(change)}")
    for note in doc["notes"]:
        out.print(f"  [dim]{escape(note)}[/]")
    drift = doc["drift"]
    if drift is not None:
        out.print(f"  drift: {len(drift['items'])} difference(s) on {len(drift['checked'])} "
                  f"host(s) compared ({drift['seconds']} s)")
        for d in drift["items"]:
            out.print(f"    [yellow]≠[/] {escape(d['host'])}: {escape(d['task'])}"
                      + (f" ({escape(d['path'])})" if d["path"] else ""))
            for line in d["diff"].splitlines()[:12]:
                out.print(f"      [dim]{escape(line)}[/]")
        for problem in drift["problems"]:
            out.print(f"    [red]not compared:[/] {escape(problem)}")
    if not doc["changes"] and not (drift and drift["found"]):
        out.print("  no changes")
