"""Options shared by several commands (defined once) and deployment resolution."""

from __future__ import annotations

import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hadeploy.errors import ExitCode, HadeployError

if TYPE_CHECKING:
    from hadeploy.config import Deployment
    from hadeploy.state import StateDir


class TargetName(StrEnum):
    """The ``--target`` choices (the same values as ``target:`` in hadeploy.yaml)."""

    LAB = "lab"
    AWS = "aws"


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Desired state file \\[default: ./hadeploy.yaml if present].",
    show_default=False)]
StateDirOpt = Annotated[Path | None, typer.Option(
    "--state-dir", help="Root of deployment state \\[env HADEPLOY_STATE_DIR; default ./.hadeploy].",
    show_default=False)]
DeploymentOpt = Annotated[str | None, typer.Option(
    "--deployment", "-d", help="Deployment name when there is no config file \\[default: demo].",
    show_default=False)]
RegionsOpt = Annotated[str | None, typer.Option(
    "--regions", "-r", help="Comma-separated regions, the first is primary (lab defaults "
    "without a config; with a config, a subset of its regions).", show_default=False)]
TargetOpt = Annotated[TargetName | None, typer.Option(
    "--target", "-t", help="lab or aws; overrides 'target:' of the config.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors and data.")]


def seconds_option(value: float, *, name: str, low: float, high: float) -> float:
    """A finite number of seconds within [low, high] (nan, inf, negatives refused)."""
    if not math.isfinite(value) or not low <= value <= high:
        raise HadeployError(f"{name} {value!r} is not a number of seconds in [{low}, {high}]",
                            hint=f"pass e.g. {name} 1", code=ExitCode.BAD_INPUT)
    return value


def stderr_console(quiet: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, highlight=False)


def resolve(config: Path | None, regions: str | None, deployment: str | None,
            state_dir: Path | None, *, for_up: bool = False,
            target: TargetName | None = None) -> tuple[Deployment, StateDir]:
    """Find the Deployment to act on, and its state directory.

    1. ``--config`` (or ./hadeploy.yaml): the file; ``--regions`` then selects a subset of
       its regions (the primary must be among them).
    2. otherwise ``--regions``: lab defaults, keeping the subnets of regions that exist.
    3. otherwise the deployment last applied from the state directory.

    ``--target`` overrides the target of any of them (and is validated with it).
    """
    from hadeploy import config as cfg
    from hadeploy.state import StateDir

    path = config or (Path(cfg.DEFAULT_CONFIG) if Path(cfg.DEFAULT_CONFIG).exists() else None)
    if path is not None:
        dep = cfg.load(path)
        if regions is not None:
            dep = _select_regions(dep, cfg.parse_region_list(regions))
        return _with_target(dep, target, str(path)), StateDir.for_deployment(dep.name, state_dir)
    if target is TargetName.AWS:
        raise HadeployError("--target aws needs a hadeploy.yaml with an 'aws:' section "
                            "(account, certificates, AWS regions)",
                            hint="write one with 'hadeploy init --target aws', fill it in, "
                            "then 'hadeploy up --config hadeploy.yaml'", code=ExitCode.BAD_INPUT)
    state = StateDir.for_deployment("demo" if deployment is None else deployment, state_dir)
    name = state.path.name
    if regions is not None:
        if not for_up and not state.exists:
            raise HadeployError(f"deployment '{name}' does not exist",
                                hint=f"create it with 'hadeploy up --regions {regions}'",
                                code=ExitCode.BAD_INPUT)
        known: dict[str, str] = {}
        if state.exists:
            known = {r.name: r.lab_subnet for r in state.load_deployment().regions
                     if r.lab_subnet}
        dep = cfg.from_regions(cfg.parse_region_list(regions), name=name, known_subnets=known)
        return dep, state
    if for_up and not state.exists:
        raise HadeployError("nothing to deploy: no --regions, no --config and no "
                            "./hadeploy.yaml", hint="run 'hadeploy up --regions east,west', "
                            "or 'hadeploy init' to write a hadeploy.yaml",
                            code=ExitCode.BAD_INPUT)
    return _with_target(state.load_deployment(), target, str(state.file("deployment.json"))), \
        state


def _with_target(dep: Deployment, target: TargetName | None, source: str) -> Deployment:
    if target is None or dep.target.value == target.value:
        return dep
    from hadeploy.config import parse

    data = dep.model_dump(mode="json", exclude_none=True)
    data["target"] = target.value
    return parse(data, f"{source} with --target {target.value}")


def _select_regions(dep: Deployment, names: list[str]) -> Deployment:
    known = {r.name for r in dep.regions}
    unknown = [n for n in names if n not in known]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise HadeployError(f"--regions names {shown}, which the config does not define",
                            hint=f"the config defines: {', '.join(sorted(known))}",
                            code=ExitCode.BAD_INPUT)
    if dep.primary.name not in names:
        raise HadeployError(f"--regions leaves out the primary region '{dep.primary.name}'",
                            hint="include it, or change which region is primary in the config",
                            code=ExitCode.BAD_INPUT)
    from hadeploy.config import parse

    data = dep.model_dump(mode="json", exclude_none=True)
    data["regions"] = [r for r in data["regions"] if r["name"] in names]
    return parse(data, "--regions")


def require_built(dep: Deployment, state: StateDir) -> None:
    if not state.exists:
        raise HadeployError(f"deployment '{dep.name}' has not been built",
                            hint="run 'hadeploy up' first", code=ExitCode.BAD_INPUT)


def confirm(question: str, yes: bool, *, proceed_without_tty: bool = False) -> None:
    """Ask on a terminal. When nobody can answer: refuse (not guess), unless the command
    is made for scripts and outages (failover), where no terminal means proceed."""
    if yes:
        return
    if not sys.stdin.isatty():
        if proceed_without_tty:
            return
        raise HadeployError(f"{question} needs confirmation and stdin is not a terminal",
                            hint="pass --yes to confirm non-interactively",
                            code=ExitCode.REFUSED)
    if not typer.confirm(question, default=False, err=True):
        raise HadeployError("aborted; nothing was changed", code=ExitCode.ABORTED)
