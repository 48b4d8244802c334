"""`embedarena merge`: LM-Cocktail model merging (a weighted average of checkpoints)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from embedarena.cli.console import console
from embedarena.errors import ConfigError


def parse_weights(text: str) -> list[float]:
    """`0.5,0.5` → [0.5, 0.5] (the sum and signs are checked by the merge)."""
    out = []
    for part in text.split(","):
        try:
            out.append(float(part))
        except ValueError:
            raise ConfigError(f"--weights: {part.strip()!r} is not a number (give one weight "
                              "per model, comma-separated: 0.5,0.5)") from None
    return out


def merge_cmd(
    models: list[str] = typer.Argument(..., help="Two or more models of one architecture: "
                                       "dirs, minilm, hf:DIR, reranker:DIR."),
    out: Path = typer.Option(..., "--out", "-o", "--output_path", file_okay=False,
                             help="Output model dir."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="One weight per model, "
                                       "comma-separated, non-negative, summing to 1."),
    from_data: Path | None = typer.Option(None, "--from-data", exists=True, dir_okay=False,
                                          help="Compute the weights from a few {query, pos, "
                                          "neg} JSONL examples: softmax(-loss / temperature)."),
    temperature: float = typer.Option(5.0, "--temperature",
                                      help="With --from-data: softmax temperature."),
    loss_temperature: float = typer.Option(0.02, "--loss-temperature",
                                           help="With --from-data: InfoNCE temperature of "
                                           "the embedders' loss."),
    neg_number: int = typer.Option(7, "--neg-number", min=1, help="With --from-data: "
                                   "negatives per example (sampled with --seed)."),
    seed: int = typer.Option(42, "--seed", help="With --from-data: negative sampling seed."),
    align_vocab: bool = typer.Option(False, "--align-vocab", help="Extend a model whose "
                                     "vocabulary a --extend-vocab fine-tune extended, exactly "
                                     "as the fine-tune started, before merging."),
    device: str = typer.Option("auto", "--device", help="With --from-data: auto, cpu, cuda."),
    max_length: int | None = typer.Option(None, "--max-length", min=1, help="With "
                                          "--from-data: tokens per text (default: each "
                                          "model's own)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Merge checkpoints of one architecture into one model (LM-Cocktail): each parameter is
    the weighted average of the models' parameters.

    Typical use: mix a fine-tuned model with its base, to keep the base's general ability.
    Architectures, vocabularies, config and parameter names/shapes must match (the first
    difference is named); a --extend-vocab fine-tune and its base differ in vocabulary: add
    --align-vocab to merge with the base extended exactly as the fine-tune started. The output
    loads like any hf:DIR / reranker:DIR model and has embedarena_merge.json saying how it
    was made.

    --from-data computes the weights as LM-Cocktail does: each model's mean loss on the
    examples as it is served (embedders: InfoNCE of the query against its positive and
    --neg-number negatives; rerankers: cross-entropy of the group's logits), then
    softmax(-loss / --temperature). Negatives are drawn with --seed, so the weights are
    reproducible.

    Example: embedarena merge minilm models/minilm-ft --weights 0.5,0.5 --out models/mix
    (or --from-data examples.jsonl --temperature 5)
    """
    from embedarena.cli.progress import CliProgress
    from embedarena.progress import using
    from embedarena.training.merge import FromData, as_spec, merge_models

    if (weights is None) == (from_data is None):
        raise ConfigError("give --weights (one per model, e.g. 0.5,0.5) or --from-data "
                          "EXAMPLES.jsonl")
    w = parse_weights(weights) if weights is not None else None
    if from_data is None:
        given = [f for f, changed in (("--temperature", temperature != 5.0),
                                      ("--loss-temperature", loss_temperature != 0.02),
                                      ("--neg-number", neg_number != 7),
                                      ("--max-length", max_length is not None)) if changed]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --from-data")
    specs = [as_spec(m) for m in models]
    if max_length is not None:
        specs = [s.model_copy(update={"max_length": max_length}) for s in specs]
    data = (FromData(from_data, temperature, loss_temperature, neg_number, seed, device)
            if from_data is not None else None)
    with CliProgress() as progress, using(progress):
        res = merge_models(specs, out, weights=w, from_data=data, align_vocab=align_vocab,
                           overwrite=overwrite, log=None)
    table = Table(title=f"merged {res.kind}s into {escape(str(res.output_dir))}")
    table.add_column("model")
    table.add_column("weight", justify="right")
    if res.losses is not None:
        table.add_column("loss", justify="right")
    for i, name in enumerate(res.models):
        cells = [escape(name) + (f" (vocabulary +{res.aligned[name]})" if name in res.aligned
                                 else ""), f"{res.weights[i]:.4f}"]
        if res.losses is not None:
            cells.append(f"{res.losses[i]:.4f}")
        table.add_row(*cells)
    console.print(table)
    prefix = "reranker" if res.kind == "reranker" else "hf"
    console.print(f"{res.tensors} tensors ({res.parameters:,} parameters), files from "
                  f"{res.template}; load it as {prefix}:{res.output_dir}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_cmd)
