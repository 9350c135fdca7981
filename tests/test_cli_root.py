"""The root command: version, help, error mapping and start-up cost."""

from __future__ import annotations

import subprocess
import sys

from serenesense_cli import __version__
from serenesense_cli.cli import app


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"serenesense {__version__}"


def test_help_lists_commands(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.stdout


def test_unknown_command_is_usage_error(runner):
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_python_dash_m_runs():
    done = subprocess.run(
        [sys.executable, "-m", "serenesense_cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert __version__ in done.stdout


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from serenesense_cli.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'torchaudio', 'timm', 'onnxruntime') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in done.stdout, done.stdout[-500:]
