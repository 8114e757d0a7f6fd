"""The ``hadeploy`` command. The root app only wires commands; each lives in its own
module under ``hadeploy.commands``. Only typer and the standard library are imported at
start-up; everything heavy is imported inside the command that needs it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import typer

from hadeploy.commands import (
    backup,
    doctor,
    down,
    drill,
    failover,
    init,
    plan,
    reconcile,
    report,
    status,
    up,
    watch,
)
from hadeploy.errors import ExitCode, HadeployError

app = typer.Typer(
    name="hadeploy",
    help="Deploy an application highly available across regions and keep it available.\n\n"
    "Quick start on one Linux machine (lab target):  hadeploy up --regions east,west",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print locals: they may hold secrets
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
COMMANDS: dict[str, Callable[..., None]] = {
    "init": init.init, "plan": plan.plan, "up": up.up, "status": status.status,
    "down": down.down, "failover": failover.failover, "failback": failover.failback,
    "watch": watch.watch, "restore": backup.restore, "drill": drill.drill,
    "doctor": doctor.doctor, "report": report.report, "reconcile": reconcile.reconcile,
}


def unwrap(doc: str | None) -> str:
    """A docstring as help text: the source is hard-wrapped at 100 columns, and the help
    renderer wraps again at the terminal's width, so every paragraph is joined into one
    line first (otherwise lines break mid-sentence). Indented lines stay as they are."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split("\n"))
                       for p in paragraphs)


for _name, _command in COMMANDS.items():
    app.command(name=_name, help=unwrap(_command.__doc__))(_command)
for _info in backup.app.registered_commands:
    _info.help = unwrap(_info.callback.__doc__ if _info.callback else "")
app.add_typer(backup.app, name="backup")


def main() -> None:
    try:
        app(prog_name="hadeploy")
    except HadeployError as exc:
        _report(exc)
        sys.exit(int(exc.code))
    except KeyboardInterrupt:
        print("hadeploy: interrupted; re-run the same command to converge", file=sys.stderr)
        sys.exit(int(ExitCode.ABORTED))


def _report(exc: HadeployError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        for line in exc.hint.splitlines():
            print(f"  fix: {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
