"""``hadeploy doctor``: check this machine for a target before ``up``."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hadeploy.commands._common import ConfigOpt, JsonOpt


class TargetChoice(StrEnum):
    lab = "lab"
    aws = "aws"


TargetOpt = Annotated[TargetChoice | None, typer.Option(
    "--target", "-t", case_sensitive=False, show_default=False,
    help="Target to check \\[default: the config's target if --config or ./hadeploy.yaml "
    "parses, else lab].")]


def doctor(
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check this machine for a target: tools, podman, the container init, the lab image,
    and a real container run done the way 'up' does it (removed afterwards).

    Every failed check prints why it matters and the exact command that fixes it.
    Exit code 0 when no check fails (warnings allowed), 6 when one does.
    Example:  hadeploy doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    from hadeploy import doctor as doc

    chosen, settings = _target_of(target.value if target else None, config)
    if not json_out:
        print(f"hadeploy doctor: checking this machine for the {chosen} target…",
              file=sys.stderr)
    checks = doc.run_checks(chosen, settings=settings)
    if json_out:
        typer.echo(json.dumps(doc.to_doc(chosen, checks), indent=2))
    else:
        typer.echo(doc.render_text(chosen, checks))
    code = doc.exit_code(checks)
    if code:
        raise typer.Exit(code)


def _target_of(target: str | None, config: Path | None) -> tuple[str, Any]:
    """The target to check, and the deployment's AWS settings when its config has them."""
    from hadeploy import config as cfg
    from hadeploy.errors import HadeployError

    path = config or (Path(cfg.DEFAULT_CONFIG) if Path(cfg.DEFAULT_CONFIG).exists() else None)
    if path is None:
        return target or "lab", None
    try:
        dep = cfg.load(path)
    except HadeployError as exc:
        if target is None:
            print(f"note: {path} does not parse ({exc.message.splitlines()[0]}); checking "
                  "the lab target", file=sys.stderr)
        return target or "lab", None
    return target or dep.target.value, dep.aws
