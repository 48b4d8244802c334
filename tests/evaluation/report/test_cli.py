"""`embedarena report`: through a small typer app (the main app registers it the same way)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from embedarena.cli.report import register

runner = CliRunner()


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.callback()
    def _root() -> None:  # keeps `report` a subcommand, as in the real app
        """test app"""

    return a


def test_report_command_writes_requested_formats(experiment_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = runner.invoke(app(), ["report", str(experiment_dir), "--out", str(out),
                                "--baseline", "acge", "--formats", "md,xlsx",
                                "--key-metrics", "precise@1,hit@5", "--resamples", "2000"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.xlsx"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Against acge" in md
    assert "| 原数据 | bge | hit@5 |" in md
    assert "2,000 random sign patterns" in md


def test_report_command_accepts_run_dirs(experiment_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = runner.invoke(app(), ["report", str(experiment_dir / "新数据" / "bge"),
                                str(experiment_dir / "新数据" / "acge"), "-o", str(out),
                                "-f", "md", "--title", "新数据 bge vs acge",
                                "--metrics", "precise@1,5"])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# 新数据 bge vs acge")
    assert "| model | precise@1 | precise@5 |" in md
    assert "acge" in md and "bge 微调" not in md


def test_report_command_bad_input(experiment_dir: Path, tmp_path: Path) -> None:
    from embedarena.errors import ConfigError, DataError

    res = runner.invoke(app(), ["report", str(experiment_dir), "-o", str(tmp_path),
                                "--baseline", "nope"])
    assert isinstance(res.exception, ConfigError) and "nope" in str(res.exception)
    res = runner.invoke(app(), ["report", str(experiment_dir), "-o", str(tmp_path),
                                "--formats", "pdf"])
    assert isinstance(res.exception, ConfigError) and "formats" in str(res.exception)
    res = runner.invoke(app(), ["report", str(tmp_path / "missing"), "-o", str(tmp_path)])
    assert isinstance(res.exception, DataError)


def test_help_and_import_stay_light() -> None:
    code = ("import sys, embedarena.cli.report, embedarena.evaluation.report, "
            "embedarena.evaluation.significance; "
            "print(sorted(m for m in ('matplotlib', 'jinja2', 'fontTools', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    res = runner.invoke(app(), ["report", "--help"])
    assert res.exit_code == 0 and "embedarena report runs/quickstart" in res.output
