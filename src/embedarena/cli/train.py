"""`embedarena train ...`: fine-tuning commands (`train embedder`, `train reranker`).

The options of each command are generated from its settings model's fields (`TrainConfig`,
`RerankerConfig`: type, default, help, spellings), so each setting is declared once for the
CLI, experiment files and the API; the shared Trainer settings get a help panel of their own.
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
from embedarena.training.embedder import TrainConfig
from embedarena.training.reranker import RerankerConfig
from embedarena.training.trainer import Flags, TrainResult, TrainSettings, flags_of

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

app = typer.Typer(help="Fine-tune models on your data (CPU, one GPU, or torchrun/accelerate "
                  "for several).", no_args_is_help=True)


#: The help panel of the settings every `train` command shares.
MACHINERY_PANEL = "Trainer options (shared by every train command)"


# -- options generated from a settings model (TrainConfig, RerankerConfig) ---------------------
def _flags(info: FieldInfo) -> Flags:
    return flags_of(info)


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
    if origin is dict:  # LABEL=VALUE,... parsed by the settings model
        return str
    return Path if existing_file else annotation


def _dashes(token: str) -> str:
    """Option names match with `_` read as `-`, so `--train_group_size` (FlagEmbedding, HF)
    is `--train-group-size` without listing every spelling twice in `--help`."""
    return token.replace("_", "-")


def setting_option(name: str, info: FieldInfo, panel: str | None = None) -> inspect.Parameter:
    """One typer option for one setting: `--dash-name` plus the spellings declared in its
    `Flags`, with its default and help."""
    flags = _flags(info)
    dash = "--" + name.replace("_", "-")
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    annotation: Any = bool
    if flags.switch is not None:  # a bare flag that sets one value (--cpu)
        decls = list(flags.names)
        default = False
    elif flags.valued or flags.values:  # `--x True`, or other tools' value names: text
        annotation = str
        decls = [dash, *flags.names]
        default = default if default is ... else str(default)
    elif info.annotation is bool and default is True:
        decls = [f"{dash}/--no-{dash[2:]}", *flags.names]
    else:
        annotation = _cli_type(info.annotation, flags.existing_file)
        decls = [dash, *flags.names]
        if isinstance(default, dict):
            default = ",".join(f"{k}={v:g}" for k, v in default.items())
    file_kw: dict[str, Any] = {"exists": True, "dir_okay": False} if flags.existing_file else {}
    option = typer.Option(default, *decls, help=info.description, rich_help_panel=panel,
                          **file_kw)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def setting_options(model: type[BaseModel]) -> Callable[[F], F]:
    """Give a `command(**values)` one typer option per field of `model`: typer reads the
    options from the signature, so it is built from the fields and nothing is hand-kept."""

    shared = set(TrainSettings.machinery_names()) if issubclass(model, TrainSettings) else set()

    def decorate(func: F) -> F:
        params = [setting_option(n, f, MACHINERY_PANEL if n in shared else None)
                  for n, f in model.model_fields.items()]
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
    from embedarena.training import embedder as training

    _run(lambda: training.train_embedder(config_from_cli(TrainConfig, values)))


@app.command("reranker", context_settings={"token_normalize_func": _dashes})
@setting_options(RerankerConfig)
def reranker_cmd(**values: Any) -> None:
    """Fine-tune a cross-encoder reranker (FlagEmbedding / RAG-Retrieval style).

    --loss group: listwise CE over 1 positive + train_group_size-1 negatives per query from
    {query, pos, neg} JSONL (what `embedarena mine` writes); --loss bce: (query, pos) -> 1,
    (query, neg) -> 0; --loss mse: graded query<TAB>doc<TAB>label TSV through --label-map,
    MSE on sigmoid(logit). The base is a reranker dir (bge-reranker, bce-reranker) or any
    BERT-like encoder (a fresh 1-logit head is added). The output dir is a standard HF
    sequence-classification dir (AutoModelForSequenceClassification, CrossEncoder). A run
    whose scores collapse (every candidate alike) is stopped with the likely causes.
    FlagEmbedding and RAG-Retrieval spellings work (--train_data/--dataset, --max_len,
    --train_group_size, --loss_type classification|regression, --warmup_proportion, --lr,
    --epochs, --batch_size, --num_labels 1, --dataloader_drop_last True, ...); several GPUs:
    `torchrun --nproc_per_node 4 -m embedarena train reranker ...` or `accelerate launch`.

    Example: embedarena train reranker -m ./models/bge-reranker-base -t train.minedHN.jsonl
    -o models/reranker-ft --train-group-size 16 --max-len 512 --lr 6e-5 --epochs 2
    """
    from embedarena.training import reranker as training

    _run(lambda: training.train_reranker(config_from_cli(RerankerConfig, values)))


def _run(train: Callable[[], TrainResult]) -> None:
    """Train under one progress display (the main process's: torchrun runs one per rank)
    and say where the model went."""
    from embedarena import progress
    from embedarena.cli.progress import CliProgress

    main_process = int(os.environ.get("RANK", "0")) == 0
    with (CliProgress() if main_process else contextlib.nullcontext()) as bar, \
            progress.using(bar):
        res = train()
    if main_process:
        last = f", last logged loss {res.losses[-1][1]:.4f}" if res.losses else ""
        console.print(f"trained {res.global_step} steps{last}; model in {res.output_dir}",
                      markup=False)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="train")
