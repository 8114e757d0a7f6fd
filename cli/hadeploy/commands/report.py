"""``hadeploy report``: availability per region, incidents and failovers over a window."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from hadeploy.commands._common import ConfigOpt, DeploymentOpt, JsonOpt, StateDirOpt, resolve
from hadeploy.errors import ExitCode, HadeployError


def report(
    since: Annotated[str, typer.Option(
        "--since", help="The window, back from now: a number and a unit (s, m, h, d), e.g. "
        "24h or 7d (the probe history keeps 7 days).")] = "7d",
    png: Annotated[Path | None, typer.Option(
        "--png", help="Also draw the regions' timelines (observed up, down, failovers) into "
        "this PNG file.", show_default=False)] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    deployment: DeploymentOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Report availability per region over a window, as 'hadeploy watch' saw it: the time
    it was probing (from the probe history), the periods each region was down by quorum
    (incidents, from watch's decisions in the audit log), availability = 1 - down time /
    observed time, the share of successful probes per vantage point, and every failover,
    failback and failover not made in the window.

    Read-only: no lock, nothing written but --png. Exit code 2 for a bad --since, a --png
    that cannot be written (checked first) or a deployment without probe history.

    Example:  hadeploy report --since 24h --png availability.png
    """
    from hadeploy.config import parse_duration
    from hadeploy.report import build, render_png, render_text

    try:
        window = parse_duration(since.strip())
    except ValueError as exc:  # the config's own duration check, its message and hint
        hint = getattr(exc, "hint", None) or "write a number and a unit, e.g. 24h or 7d"
        raise HadeployError(f"--since: {exc}", hint=hint, code=ExitCode.BAD_INPUT) from None
    if png is not None:
        _writable(png)
    dep, state = resolve(config, None, deployment, state_dir)
    until = time.time()
    doc = build(dep, state, until - window, until)
    if png is not None:
        render_png(doc, png)
    if json_out:
        typer.echo(json.dumps({**doc.to_dict(), "png": str(png) if png else None}, indent=2))
    else:
        typer.echo(render_text(doc), nl=False)
        if png is not None:
            typer.echo(f"timeline: {png}")


def _writable(path: Path) -> None:
    """Refuse a --png that cannot be written before reading anything."""
    problem = None
    if path.is_dir():
        problem = "is a directory"
    elif not path.parent.is_dir():
        problem = f"is in {path.parent}, which is not a directory"
    else:
        existed = path.exists()
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            problem = f"cannot be written ({exc.strerror})"
        else:
            if not existed:
                path.unlink()
    if problem is not None:
        raise HadeployError(f"--png {path} {problem}", hint="name a file in a writable "
                            "directory, e.g. --png ./availability.png",
                            code=ExitCode.BAD_INPUT)
