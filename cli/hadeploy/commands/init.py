"""``hadeploy init``: write a commented example hadeploy.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hadeploy.commands._common import TargetName, TargetOpt
from hadeploy.errors import ExitCode, HadeployError


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path(
        "hadeploy.yaml"),
    target: TargetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example desired-state file (--target aws: an AWS template).

    Example:  hadeploy init && hadeploy plan && hadeploy up
    """
    import yaml

    from hadeploy.config import EXAMPLE, EXAMPLE_AWS, parse

    text = EXAMPLE_AWS if target is TargetName.AWS else EXAMPLE
    parse(yaml.safe_load(text), "the built-in example")  # the example must stay valid
    _check_destination(path, force)
    from hadeploy.state import atomic_write

    atomic_write(path, text, mode=0o644)
    typer.echo(f"wrote {path}; edit it, then run 'hadeploy plan' and 'hadeploy up'", err=True)


def _check_destination(path: Path, force: bool) -> None:
    if path.is_dir():
        raise HadeployError(f"{path} is a directory", hint=f"name a file, e.g. "
                            f"{path / 'hadeploy.yaml'}", code=ExitCode.BAD_INPUT)
    if (path.exists() or path.is_symlink()) and not force:
        raise HadeployError(f"{path} already exists; not overwriting it",
                            hint="pass --force to overwrite, or a different path",
                            code=ExitCode.BAD_INPUT)
    if path.exists() and not path.is_file():
        raise HadeployError(f"{path} is not a regular file", hint="name a regular file",
                            code=ExitCode.BAD_INPUT)
    parent = path.parent if str(path.parent) else Path()
    if not parent.is_dir():
        raise HadeployError(f"directory {parent} does not exist",
                            hint=f"create it first (mkdir -p {parent}) or name another path",
                            code=ExitCode.BAD_INPUT)
    import os

    if not os.access(parent, os.W_OK | os.X_OK):
        raise HadeployError(f"directory {parent} is not writable",
                            hint="choose a writable directory", code=ExitCode.BAD_INPUT)
