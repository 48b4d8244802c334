"""The CLI shell: help, version (in process, through `main()`), and staying light."""

from __future__ import annotations

import subprocess
import sys

from embedarena import __version__


def test_version(cli) -> None:  # noqa: ANN001
    p = cli("--version")
    assert p.code == 0 and p.stdout.strip() == f"embedarena {__version__}"


def test_help_lists_command_groups(cli) -> None:  # noqa: ANN001
    p = cli("--help")
    assert p.code == 0
    for cmd in ("es", "data", "index", "eval", "compare", "run", "report", "mine", "train",
                "tune-fusion", "calibrate", "ann-check"):
        assert f" {cmd} " in p.stdout, cmd


def test_help_does_not_import_heavy_libraries() -> None:
    code = ("import sys; from embedarena.cli import app; "
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'langchain_core') "
            "if m in sys.modules]; print(','.join(heavy))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""
