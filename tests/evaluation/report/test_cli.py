"""`embedarena report` through the real entry point `main()`, in process (the `cli` fixture;
tests/cli/test_smoke.py runs it once as a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_report_command_writes_requested_formats(cli, experiment_dir: Path,  # noqa: ANN001
                                                 tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = cli("report", experiment_dir, "--out", out, "--baseline", "acge", "--formats",
              "md,xlsx", "--key-metrics", "precise@1,hit@5", "--resamples", "2000")
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.xlsx"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Against acge" in md
    assert "| 原数据 | bge | hit@5 |" in md
    assert "2,000 random sign patterns" in md


def test_report_command_accepts_run_dirs(cli, experiment_dir: Path,  # noqa: ANN001
                                         tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = cli("report", experiment_dir / "新数据" / "bge", experiment_dir / "新数据" / "acge",
              "-o", out, "-f", "md", "--title", "新数据 bge vs acge", "--metrics", "precise@1,5")
    assert res.code == 0, res.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# 新数据 bge vs acge")
    assert "| model | precise@1 | precise@5 |" in md
    assert "acge" in md and "bge 微调" not in md


def test_report_command_bad_input(cli, experiment_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Each mistake is our own error: its exit code and one `error:` line, no Traceback."""
    from embedarena.errors import ConfigError, DataError

    def one_line(res) -> str:  # noqa: ANN001
        assert "Traceback" not in res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("error: ")
        return line

    res = cli("report", experiment_dir, "-o", tmp_path, "--baseline", "nope")
    assert res.code == ConfigError.exit_code and "nope" in one_line(res)
    res = cli("report", experiment_dir, "-o", tmp_path, "--formats", "pdf")
    assert res.code == ConfigError.exit_code and "formats" in one_line(res)
    res = cli("report", tmp_path / "missing", "-o", tmp_path)
    assert res.code == DataError.exit_code and one_line(res)


def test_help_and_import_stay_light(cli) -> None:  # noqa: ANN001
    code = ("import sys, embedarena.cli.report, embedarena.evaluation.report, "
            "embedarena.evaluation.significance; "
            "print(sorted(m for m in ('matplotlib', 'jinja2', 'fontTools', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    res = cli("report", "--help")
    assert res.code == 0 and "embedarena report runs/quickstart" in res.stdout


def test_report_refuses_runs_of_different_corpora(cli, experiment_dir: Path,  # noqa: ANN001
                                                  tmp_path: Path) -> None:
    """Issue 12, item 4: a report never mixes corpora in one table without a word."""
    from embedarena.errors import ConfigError
    from tests.evaluation.report.conftest import MODELS, make_run, save

    other = save(make_run("acge", MODELS["acge"], "新数据", 24, 2,
                          meta={"corpus_sha256": "beef" * 16}), tmp_path / "acge-new-corpus")
    res = cli("report", experiment_dir / "新数据" / "bge", other, "-o", tmp_path / "rep",
              "-f", "md")
    assert res.code == ConfigError.exit_code and "Traceback" not in res.stderr
    assert "corpus beefbeef: acge" in res.stderr and "corpus c0ffeec0: bge" in res.stderr
    assert not (tmp_path / "rep").exists()
