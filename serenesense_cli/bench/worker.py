"""Benchmark one model in a fresh process (``python -m serenesense_cli.bench.worker``).

Why a process per model: peak RSS is process-wide, and an ONNX benchmark
must not pay for (or hide) a torch import that an earlier model made. The
parent (:mod:`serenesense_cli.bench.run`) passes the model path, the settings
as JSON and a result path; the worker sends progress as JSON lines on stdout
(a pipe the parent reads, never a terminal) and writes the result, or the
error, as JSON to the result path.

Usage: ``python -m serenesense_cli.bench.worker MODEL SETTINGS_JSON RESULT_JSON``
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from serenesense_cli.fileio import json_text

ERROR_EXIT = 3
_SMALLER = "use a smaller --batch or a shorter --duration"


def _send(line: dict[str, Any]) -> None:
    sys.stdout.write(json_text(line) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Run the benchmark; 0 on success, :data:`ERROR_EXIT` with an error document."""
    from serenesense_cli.bench.latency import BenchSettings, measure_model
    from serenesense_cli.errors import SereneSenseError, missing_extra
    from serenesense_cli.fileio import write_json_atomic

    model, settings_json, result_path = argv
    settings = BenchSettings(**json.loads(settings_json))

    def on_progress(update: Any) -> None:
        _send({"stage": update.stage, "done": update.done, "total": update.total, **update.info})

    try:
        result = measure_model(Path(model), settings, on_progress=on_progress)
    except SereneSenseError as error:
        write_json_atomic(
            result_path,
            {"error": error.message, "hint": error.hint, "exit_code": error.exit_code},
        )
        return ERROR_EXIT
    except MemoryError:
        write_json_atomic(
            result_path,
            {"error": f"{model}: out of memory while benchmarking", "hint": _SMALLER},
        )
        return ERROR_EXIT
    except Exception as error:  # the parent shows one line, never a traceback
        missing = missing_extra(error, command="bench")
        if missing is not None:  # a torch model on the lean install
            write_json_atomic(
                result_path,
                {"error": missing.message, "hint": missing.hint, "exit_code": missing.exit_code},
            )
            return ERROR_EXIT
        traceback.print_exc()  # into the parent's stderr file, for --debug readers
        first_line = (str(error).splitlines() or [""])[0][:300]
        write_json_atomic(
            result_path,
            {
                "error": f"{model}: the benchmark failed ({type(error).__name__}: {first_line})",
                "hint": "check the model with `serenesense detect` on a short file",
            },
        )
        return ERROR_EXIT
    write_json_atomic(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
