"""The ``hadeploy`` command. The root app only wires commands; each lives in its own
module under ``hadeploy.commands``. Only typer and the standard library are imported at
start-up; everything heavy is imported inside the command that needs it.
"""

from __future__ import annotations

import sys

import typer

from hadeploy.commands import doctor, down, failover, init, plan, status, up, watch
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
app.command(name="init")(init.init)
app.command(name="plan")(plan.plan)
app.command(name="up")(up.up)
app.command(name="status")(status.status)
app.command(name="down")(down.down)
app.command(name="failover")(failover.failover)
app.command(name="failback")(failover.failback)
app.command(name="watch")(watch.watch)
app.command(name="doctor")(doctor.doctor)


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
