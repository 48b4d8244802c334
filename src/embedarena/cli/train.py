"""`embedarena train ...`: fine-tuning commands (`train embedder`).

The options of `train embedder` are generated from `TrainConfig`'s fields (type, default,
help, spellings), so each setting is declared once for the CLI, experiment files and the API.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Optional, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from embedarena.cli.console import console
from embedarena.training.embedder import Flags, TrainConfig

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

app = typer.Typer(help="Fine-tune models on your data (CPU, one GPU, or torchrun/accelerate "
                  "for several).", no_args_is_help=True)


# -- options generated from a settings model (TrainConfig) -------------------------------------
def _flags(info: FieldInfo) -> Flags:
    return next((m for m in info.metadata if isinstance(m, Flags)), Flags())


def _cli_type(annotation: Any, existing_file: bool) -> Any:
    """The type typer parses a setting as (validation proper is TrainConfig's): files are
    `Path`s that must exist, list items plain strings (`--report-to a,b`); a `Literal`
    stays one, which typer shows as a choice."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no command-line type for {annotation}")
        return Optional[_cli_type(inner[0], existing_file)]  # noqa: UP045 (runtime object)
    if origin is list:
        return list[Path] if existing_file else list[str]
    return Path if existing_file else annotation


def _dashes(token: str) -> str:
    """Option names match with `_` read as `-`, so `--train_group_size` (FlagEmbedding, HF)
    is `--train-group-size` without listing every spelling twice in `--help`."""
    return token.replace("_", "-")


def setting_option(name: str, info: FieldInfo) -> inspect.Parameter:
    """One typer option for one setting: `--dash-name` plus the spellings declared in its
    `Flags`, with its default and help."""
    flags = _flags(info)
    dash = "--" + name.replace("_", "-")
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    annotation: Any = bool
    if flags.switch is not None:  # a bare flag that sets one value (--cpu)
        decls = list(flags.names)
        default = False
    elif info.annotation is bool and default is True:
        decls = [f"{dash}/--no-{dash[2:]}", *flags.names]
    else:
        annotation = _cli_type(info.annotation, flags.existing_file)
        decls = [dash, *flags.names]
    file_kw: dict[str, Any] = {"exists": True, "dir_okay": False} if flags.existing_file else {}
    option = typer.Option(default, *decls, help=info.description, **file_kw)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def setting_options(model: type[BaseModel]) -> Callable[[F], F]:
    """Give a `command(**values)` one typer option per field of `model`: typer reads the
    options from the signature, so it is built from the fields and nothing is hand-kept."""

    def decorate(func: F) -> F:
        params = [setting_option(n, f) for n, f in model.model_fields.items()]
        setattr(func, "__signature__", inspect.Signature(params))  # noqa: B010
        func.__annotations__ = {p.name: p.annotation for p in params}
        return func

    return decorate


def config_from_cli(model: type[M], values: dict[str, Any]) -> M:
    """The parsed options as the settings model (switches become the value they stand for)."""
    settings = dict(values)
    for name, info in model.model_fields.items():
        switch = _flags(info).switch
        if switch is not None:
            settings[name] = switch if settings.get(name) else info.get_default()
    return model(**settings)


@app.command("embedder", context_settings={"token_normalize_func": _dashes})
@setting_options(TrainConfig)
def embedder_cmd(**values: Any) -> None:
    """Contrastive fine-tuning (InfoNCE) of a local Hugging Face encoder.

    The output dir is a standard HF model dir with sentence-transformers files, loadable by
    `hf:DIR`, SentenceTransformer(DIR) and FlagEmbedding. Several GPUs:
    `torchrun --nproc_per_node 4 -m embedarena train embedder ...`, or `accelerate launch`.
    Every option also takes its snake_case spelling, as FlagEmbedding and HF scripts write
    them (--learning_rate, --num_train_epochs, --per_device_train_batch_size,
    --train_group_size, --query_max_len, --gradient_accumulation_steps, ...).

    Example: embedarena train embedder -m minilm -t train.minedHN.jsonl -o models/minilm-ft
    --epochs 2 --batch-size 32 --train-group-size 4
    """
    from embedarena import progress
    from embedarena.cli.progress import CliProgress
    from embedarena.training import embedder as training

    cfg = config_from_cli(TrainConfig, values)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun: one bar, not one per rank
    with (CliProgress() if main_process else contextlib.nullcontext()) as bar, \
            progress.using(bar):
        res = training.train_embedder(cfg)
    if main_process:
        last = f", last logged loss {res.losses[-1][1]:.4f}" if res.losses else ""
        console.print(f"trained {res.global_step} steps{last}; model in {res.output_dir}",
                      markup=False)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="train")
