"""The shell every command runs in: the typer apps and how their help reads, the state
directory, one line and an exit code for each error, signals, confirmation, and the
console entry point.

Help follows kubectl's habits: ``-h`` or ``--help`` anywhere, ``--version``, shell
completion (``--install-completion``, or ``--show-completion`` to copy), plain text
(no boxes that cut long option names at 80 columns), each value's metavar saying what it
is (``FILE``, ``NODE``, ``DURATION``), and switches without a ``--no-`` twin."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

from migrate import __version__, output
from migrate.cli.options import Format, OutputOpt
from migrate.errors import BadInput, Interrupted, MigrateError, Paused, exit_code
from migrate.plan import SCHEMA
from migrate.ports import StopFlag

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Command(TyperCommand):
    """A command whose help names its arguments as their metavars (``PLANFILE``, not
    ``{PLANFILE}``) and lists them with their help, not their Python type."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [
            (p.metavar or p.name.upper(), p.help or "")
            for p in self.get_params(ctx)
            if isinstance(p, TyperArgument) and not p.hidden
        ]
        options = [
            record
            for p in self.get_params(ctx)
            if not isinstance(p, TyperArgument) and (record := p.get_help_record(ctx)) is not None
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    write_rows(formatter, rows)


def write_rows(formatter: Any, rows: list[tuple[str, str]]) -> None:
    """Rows of name and help as click's ``write_dl`` lays them out, but wrapped only at
    spaces: a flag named in a help text (``--install-cilium``) is never split at its hyphen."""
    indent = " " * formatter.current_indent
    column = min(max(len(name) for name, _ in rows), 30) + 2
    width = max(formatter.width - column - len(indent), 10)
    for name, text in rows:
        lines = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]
        if len(name) <= column - 2:
            formatter.write(f"{indent}{name:<{column}}{lines[0]}".rstrip() + "\n")
        else:
            formatter.write(f"{indent}{name}\n{indent}{' ' * column}{lines[0]}".rstrip() + "\n")
        for line in lines[1:]:
            formatter.write(f"{indent}{' ' * column}{line}\n")


app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
    help="Move a live Kubernetes cluster from Calico to Cilium, node by node.",
)
sim_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
    help="Simulated clusters (no Kubernetes needed).",
)
app.add_typer(sim_app, name="sim")

DEBUG = {"on": False}
# Set by the console entry point: the process is cni-migrate's own, not a test's or a caller's.
PROCESS = {"own": False}


def home() -> Path:
    if os.environ.get("CNI_MIGRATE_HOME"):
        return Path(os.environ["CNI_MIGRATE_HOME"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cni-migrate"


def print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"cni-migrate {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    DEBUG["on"] = debug


def version(o: OutputOpt = Format.table) -> None:
    """Print the version and the plan schema it reads and writes."""
    record = {"version": __version__, "planSchema": SCHEMA}
    if o is Format.table:
        typer.echo(f"cni-migrate {__version__} (plan schema {SCHEMA})")
    else:
        typer.echo(output.render(record, o.value))


def run_cli(fn: Callable[[], int | None]) -> None:
    """Run a command body; turn errors into one stderr line and an exit code."""
    try:
        code = fn() or 0
    except MigrateError as exc:
        if DEBUG["on"]:
            raise
        message = exc.message
        if isinstance(exc, Interrupted) and "resume" not in message:
            message += "; the journal is resumable: continue with 'cni-migrate resume'"
        # A pause the operator asked for is said as what it is; the exit code still says
        # "stopped, resumable" to a script.
        typer.echo(message if isinstance(exc, Paused) else f"error: {message}", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted; the journal is resumable with 'cni-migrate resume'", err=True)
        raise typer.Exit(Interrupted.exit_code) from None
    except BrokenPipeError:
        # The reader of our output left (``| head``) after the command's work was done, or
        # before a command that only reads: nothing is left half-done; say so once.
        output.discard_stdout()
        typer.echo("error: the standard output was closed before all output was written", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


# Whether the main thread is waiting at a question (``ask``), for the signal handler.
PROMPT = {"open": False}


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """First SIGINT/SIGTERM/SIGHUP (the operator's terminal or SSH session went away):
    finish the step, checkpoint, exit 5. Second: stop at once. At a question there is no
    step to finish: the first one stops the run there (``ask`` raises ``Interrupted``, the
    gate's boundary records it), where waiting for the step's end would wait for an answer
    that the operator has just refused to give."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        reason = f"received {signal.Signals(signum).name}"
        stop.set(reason)
        if PROMPT["open"]:
            raise Interrupted(f"stopped at the prompt: {reason}; continue with 'cni-migrate resume'")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        # Once asked to stop, or once the run has ended in cni-migrate's own process, the
        # journal is saved and the process is on its way out: a further Ctrl-C must not turn
        # the clean exit into a traceback, or, once the interpreter has begun to shut down and
        # put back the default handlers, into death by signal with the exit code lost.
        done = stop.is_set() or PROCESS["own"]
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if done else h)


def ask(console: output.Console, question: str, default: str | None = None) -> str:
    """One question at the terminal, with the progress view out of its way (a live bar
    redrawn over it would erase it). Ctrl-C at the question, a signal, or the end of input
    stops the run as they would anywhere else: ``Interrupted``."""
    with console.asking():
        PROMPT["open"] = True
        try:
            return str(typer.prompt(question, default=default))
        except (typer.Abort, KeyboardInterrupt, EOFError):
            # typer turns Ctrl-C (outside a run's signal handler) and Ctrl-D into Abort.
            raise Interrupted("stopped at the prompt: interrupted; continue with 'cni-migrate resume'") from None
        finally:
            PROMPT["open"] = False


def confirm(question: str, yes: bool, console: output.Console | None = None) -> None:
    """The "[y/N]" before a command writes anything; ``console``: its progress view, moved
    out of the question's way while it waits."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput("no terminal to confirm on: pass --yes to run non-interactively")
    with console.asking() if console is not None else nullcontext():
        if not typer.confirm(question, default=False):
            raise BadInput("not confirmed; nothing was changed")


def prog_name(argv0: str) -> str:
    """``kubectl cni-migrate`` when kubectl runs us as its plugin (the ``kubectl-cni_migrate``
    script on PATH), so help and usage show what the operator typed."""
    return "kubectl cni-migrate" if Path(argv0).name.startswith("kubectl-") else "cni-migrate"


def run() -> None:
    """The console entry point (``cni-migrate``, and ``kubectl-cni_migrate`` for kubectl).
    Usage errors (an unknown option, a bad value) are one line and exit 2, like every other
    bad input; Ctrl-C at a prompt is exit 5."""
    PROCESS["own"] = True
    try:
        # One completion variable whichever name started us.
        code = app(standalone_mode=False, prog_name=prog_name(sys.argv[0]), complete_var="_CNI_MIGRATE_COMPLETE")
    except typer.Abort:
        typer.echo(
            "error: interrupted at a prompt; a started run's journal is resumable with 'cni-migrate resume'", err=True
        )
        sys.exit(Interrupted.exit_code)
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        message = getattr(exc, "format_message", None)
        if type(exc).__name__ == "NoArgsIsHelpError" or message is None:
            if show is not None:
                show()  # the help text, as typer would print it
            sys.exit(getattr(exc, "exit_code", 2))
        text = " ".join(message().split())
        if text == "No such option: -o":
            # runbook's -o was its file before -o meant a format (issue 29): say where it went.
            text += "; files are written with --out FILE"
        typer.echo(f"error: {text} (see --help)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
