"""``hadeploy init``: write a commented example hadeploy.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hadeploy.errors import ExitCode, HadeployError


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path(
        "hadeploy.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example desired-state file.

    Example:  hadeploy init && hadeploy plan && hadeploy up
    """
    import yaml

    from hadeploy.config import EXAMPLE, parse

    parse(yaml.safe_load(EXAMPLE), "the built-in example")  # the example must stay valid
    if path.exists() and not force:
        raise HadeployError(f"{path} already exists; not overwriting it",
                            hint="pass --force to overwrite, or a different path",
                            code=ExitCode.BAD_INPUT)
    path.write_text(EXAMPLE)
    typer.echo(f"wrote {path}; edit it, then run 'hadeploy plan' and 'hadeploy up'", err=True)
