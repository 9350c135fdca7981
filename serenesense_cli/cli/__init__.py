"""The root ``serenesense`` Typer app: global options, error mapping, exit codes.

Every command group lives in its own module and is added here. Domain errors
(:class:`~serenesense_cli.errors.SereneSenseError`) become one line on stderr
plus a hint, with exit code 1 (failure) or 2 (bad usage or input); so does a
command that needs the ``train`` extra on the lean install (exit code 2). A
traceback is shown only with ``--debug`` or ``SERENESENSE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from serenesense_cli import __version__
from serenesense_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    SereneSenseError,
    missing_extra,
)

DEBUG_ENV = "SERENESENSE_DEBUG"


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    """True when tracebacks were asked for (``--debug`` or the environment)."""
    if ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _print_error(message: str, hint: str | None) -> None:
    # Plain writes, not rich markup: user strings (paths) may contain brackets.
    sys.stderr.write(f"Error: {message}\n")
    if hint:
        sys.stderr.write(f"Hint: {hint}\n")
    sys.stderr.flush()


class ErrorMappingGroup(TyperGroup):
    """Root group that turns domain errors into messages and exit codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from serenesense_cli.cli._help import tidy_group

        tidy_group(self)  # plain value labels in every command's --help

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        """Usage errors (unknown option, a value not among the choices) as one
        line plus a hint, like every other error, instead of a framed panel."""
        from serenesense_cli.cli._help import tidy_command

        tidy_command(self)  # the root's own options, with the completion ones Typer adds late
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            if not standalone_mode:
                raise
            _print_error("aborted", None)
            sys.exit(EXIT_FAILURE)
        except typer.TyperException as error:  # Typer's own click's usage errors
            if not standalone_mode or not hasattr(error, "format_message"):
                raise
            if type(error).__name__ != "NoArgsIsHelpError":  # the help was shown already
                ctx = getattr(error, "ctx", None)
                where = f"see `{ctx.command_path} --help`" if ctx is not None else None
                _print_error(error.format_message().replace("Value error, ", ""), where)
            sys.exit(getattr(error, "exit_code", EXIT_BAD_INPUT))
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SereneSenseError as error:
            if debug_enabled(ctx):
                raise
            _print_error(error.message, error.hint)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                raise
            _print_error("interrupted", None)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except MemoryError:
            if debug_enabled(ctx):
                raise
            _print_error("out of memory", "use a smaller batch size or shorter clips")
            raise typer.Exit(EXIT_FAILURE) from None
        except OSError as error:
            if debug_enabled(ctx):
                raise
            where = f"{error.filename}: " if getattr(error, "filename", None) else ""
            _print_error(f"{where}{error.strerror or error}", "run again with --debug for details")
            raise typer.Exit(EXIT_FAILURE) from None
        except Exception as error:
            if debug_enabled(ctx):
                raise
            missing = missing_extra(error, command=ctx.invoked_subcommand)
            if missing is not None:  # the lean install: torch & co. were left out
                _print_error(missing.message, missing.hint)
                raise typer.Exit(missing.exit_code) from None
            _print_error(
                f"unexpected {type(error).__name__}: {error}",
                "this is a bug; run again with --debug and report the traceback",
            )
            raise typer.Exit(EXIT_FAILURE) from None


app = typer.Typer(
    name="serenesense",
    cls=ErrorMappingGroup,
    help="Recognise battlefield sounds: prepare data, train, evaluate, export and detect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"serenesense {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show full tracebacks on errors (or SERENESENSE_DEBUG=1)."),
    ] = False,
) -> None:
    """Recognise battlefield sounds in recordings and from a live microphone."""
    ctx.ensure_object(dict)["debug"] = debug


def _register_commands() -> None:
    """Attach command groups (imports stay light: no torch at this point)."""
    from serenesense_cli.cli import data, models, train

    app.add_typer(data.app, name="data")
    app.command("train", no_args_is_help=True)(train.train_command)
    app.command("models")(models.models_command)

    from serenesense_cli.cli import evaluate, report

    app.command("evaluate", no_args_is_help=True)(evaluate.evaluate_command)
    app.command("report", no_args_is_help=True)(report.report_command)

    from serenesense_cli.cli import pretrain

    app.command("pretrain", no_args_is_help=True)(pretrain.pretrain_command)

    from serenesense_cli.cli import detect

    app.command("detect", no_args_is_help=True)(detect.detect_command)

    from serenesense_cli.cli import plot, score

    app.command("score", no_args_is_help=True)(score.score_command)
    app.command("plot", no_args_is_help=True)(plot.plot_command)

    from serenesense_cli.cli import bench, export, quantize

    app.command("export", no_args_is_help=True)(export.export_command)
    app.command("quantize", no_args_is_help=True)(quantize.quantize_command)
    app.command("bench", no_args_is_help=True)(bench.bench_command)

    from serenesense_cli.cli import demo

    app.command("demo")(demo.demo_command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 (kept by Python as surrogates)
        # is shown escaped instead of failing the write.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app(args=argv, prog_name="serenesense")
    except SystemExit as exit_:
        code = exit_.code
        # click reports usage errors with exit code 2 already; keep it.
        sys.exit(code if isinstance(code, int) else (EXIT_BAD_INPUT if code else 0))
