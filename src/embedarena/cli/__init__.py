"""The `embedarena` command. Each command group lives in its own module.

Heavy libraries (torch, transformers, openai) are imported inside commands, never here, so
`embedarena --help` stays fast and works on the core install.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

from embedarena import __version__
from embedarena.cli import ann_check as ann_check_cmd
from embedarena.cli import calibrate as calibrate_cmd
from embedarena.cli import compare as compare_cmd
from embedarena.cli import convert as convert_cmd
from embedarena.cli import data as data_cmd
from embedarena.cli import es as es_cmd
from embedarena.cli import eval_rerank as eval_rerank_cmd
from embedarena.cli import evaluate as eval_cmd
from embedarena.cli import index as index_cmd
from embedarena.cli import merge as merge_cmd
from embedarena.cli import mine as mine_cmd
from embedarena.cli import report as report_cmd
from embedarena.cli import run as run_cmd
from embedarena.cli import train as train_cmd
from embedarena.cli import tune as tune_cmd
from embedarena.cli.console import err_console
from embedarena.errors import EmbedarenaError

app = typer.Typer(
    name="embedarena",
    help=(
        "Benchmark embedding models side by side on your own retrieval data: one Elasticsearch "
        "index per model, query files in, precise@k comparison tables out.\n\n"
        "Example: embedarena es start && embedarena run examples/quickstart.yaml"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embedarena {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """embedarena command line."""


app.add_typer(es_cmd.app, name="es")
app.add_typer(data_cmd.app, name="data")
app.add_typer(index_cmd.app, name="index")
app.add_typer(convert_cmd.app, name="convert")
eval_cmd.register(app)
eval_rerank_cmd.register(app)
compare_cmd.register(app)
run_cmd.register(app)
tune_cmd.register(app)
calibrate_cmd.register(app)
ann_check_cmd.register(app)
report_cmd.register(app)
mine_cmd.register(app)
train_cmd.register(app)
merge_cmd.register(app)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so every `finally` cleans up (a build
    deletes its partial index) before the process exits with 143."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM raises `Terminated` during the body (main thread only), and is recorded in the
    yielded list (typer turns any KeyboardInterrupt into a plain 130); restored after."""
    import signal
    import threading

    fired: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def terminate(signum: int, frame: object) -> None:
        fired.append(signum)
        raise Terminated()

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, terminate)
    try:
        yield fired
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main() -> None:
    """Entry point: our own errors become one red line and an exit code, never a traceback."""
    from rich.markup import escape

    try:
        with _sigterm_as_interrupt() as terminated:
            rc = app(standalone_mode=False)
        if rc == 130:  # typer's answer to a KeyboardInterrupt (Ctrl-C, or SIGTERM above)
            err_console.print("[yellow]terminated[/]" if terminated else "[yellow]interrupted[/]")
            rc = 143 if terminated else 130
    except EmbedarenaError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        err_console.print("[yellow]terminated[/]" if term else "[yellow]interrupted[/]")
        sys.exit(143 if term else 130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            code = getattr(e, "code", 0)
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("[yellow]aborted[/]")
        sys.exit(1)
    except Exception as e:  # usage errors arrive here under standalone_mode=False
        # click's, or the copy of click that typer >= 0.29 vendors (typer._click): both
        # carry show() and exit_code, so duck typing covers either
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
