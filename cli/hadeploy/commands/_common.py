"""Options shared by several commands (defined once) and deployment resolution."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hadeploy.errors import ExitCode, HadeployError

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Desired state file \\[default: ./hadeploy.yaml if present].",
    show_default=False)]
StateDirOpt = Annotated[Path | None, typer.Option(
    "--state-dir", help="Root of deployment state \\[env HADEPLOY_STATE_DIR; default ./.hadeploy].",
    show_default=False)]
DeploymentOpt = Annotated[str | None, typer.Option(
    "--deployment", "-d", help="Deployment name when there is no config file \\[default: demo].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors and data.")]


def stderr_console(quiet: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, highlight=False)


def apply_state_dir(state_dir: Path | None) -> None:
    if state_dir is not None:
        os.environ["HADEPLOY_STATE_DIR"] = str(state_dir.resolve())


def resolve(config: Path | None, regions: str | None, deployment: str | None,
            state_dir: Path | None, *, for_up: bool = False) -> tuple[Any, Any]:
    """Find the Deployment to act on, and its state directory.

    1. ``--config`` (or ./hadeploy.yaml): the file; ``--regions`` then selects a subset of
       its regions (the primary must be among them).
    2. otherwise ``--regions``: lab defaults, keeping the subnets of regions that exist.
    3. otherwise the deployment last applied from the state directory.
    """
    from hadeploy import config as cfg
    from hadeploy import paths
    from hadeploy.state import StateDir

    apply_state_dir(state_dir)
    path = config or (Path(cfg.DEFAULT_CONFIG) if Path(cfg.DEFAULT_CONFIG).exists() else None)
    if path is not None:
        dep = cfg.load(path)
        if regions is not None:
            dep = _select_regions(dep, cfg.parse_region_list(regions))
        return dep, StateDir(paths.state_dir(dep.name))
    name = deployment or "demo"
    state = StateDir(paths.state_dir(name))
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
    return state.load_deployment(), state


def _select_regions(dep: Any, names: list[str]) -> Any:
    known = {r.name for r in dep.regions}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HadeployError(f"--regions names {', '.join(unknown)}, which the config does not "
                            "define", hint=f"the config defines: {', '.join(sorted(known))}",
                            code=ExitCode.BAD_INPUT)
    if dep.primary.name not in names:
        raise HadeployError(f"--regions leaves out the primary region '{dep.primary.name}'",
                            hint="include it, or change which region is primary in the config",
                            code=ExitCode.BAD_INPUT)
    from hadeploy.config import parse

    data = dep.model_dump(mode="json")
    data["regions"] = [r for r in data["regions"] if r["name"] in names]
    return parse(data, "--regions")


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
