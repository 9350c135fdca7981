"""The root ``serenesense`` Typer app: global options, error mapping, exit codes.

Every command group lives in its own module and is added here. Domain errors
(:class:`~serenesense_cli.errors.SereneSenseError`) become one line on stderr
plus a hint, with exit code 1 (failure) or 2 (bad usage or input); a traceback
is shown only with ``--debug`` or ``SERENESENSE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from serenesense_cli import __version__
from serenesense_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, SereneSenseError

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
    add_completion=False,
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
