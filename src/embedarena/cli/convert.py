"""`embedarena convert mindspore`: a MindSpore `.ckpt` onto a Hugging Face model dir.

torch, transformers and protobuf are imported inside the command, so `embedarena --help`
stays light.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.markup import escape

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Convert checkpoints from other frameworks into model dirs that load as hf:DIR or "
        "reranker:DIR.\n\n"
        "Example: embedarena convert mindspore bge_ft.ckpt --base models/bge-small-zh-v1.5 "
        "--out models/bge-ft --verify test.jsonl"
    ),
)


def split_patterns(values: list[str]) -> list[str]:
    """`--allow-missing a,b --allow-missing c` → [a, b, c]."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


@app.command("mindspore")
def mindspore_cmd(
    ckpt: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="MindSpore checkpoint (.ckpt, unencrypted)."),
    base: str = typer.Option(..., "--base", "-b", help="The Hugging Face model dir the "
                             "checkpoint was trained from (its config, tokenizer and parameter "
                             "names; `minilm` works too)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output model dir."),
    allow_missing: list[str] = typer.Option([], "--allow-missing", help="Checkpoint tensors "
                                            "that map to nothing, or base parameters the "
                                            "checkpoint does not set, that are fine (fnmatch "
                                            "patterns, repeatable or comma-separated, e.g. "
                                            "'bert.mlmloss.*'); anything else unmatched fails."),
    orientation: str = typer.Option("output", "--orientation", help="output: where the output "
                                    "check clearly contradicts the mapping table for a square "
                                    "weight, the output wins (reported); table: such a "
                                    "contradiction is an error."),
    verify_file: Path | None = typer.Option(None, "--verify", exists=True, dir_okay=False,
                                            help="Texts to verify with: a query file (JSONL, "
                                            "TSV) or one text per line."),
    verify_n: int = typer.Option(16, "--verify-n", min=1, help="With --verify: how many "
                                 "texts."),
    mindspore_python: str | None = typer.Option(
        None, "--mindspore-python", envvar="EMBEDARENA_MINDSPORE_PYTHON",
        help="With --verify: a Python interpreter that has mindspore, to run the original "
        "checkpoint when this one does not."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Convert a MindSpore checkpoint into a copy of --base with the checkpoint's weights.

    Reads the .ckpt without MindSpore, drops optimizer state (adam_m, adam_v, moments,
    global_step, learning rate, ...), strips model./network./backbone. prefixes and maps
    mindformers BERT names (and MindNLP's Hugging Face-style names, gamma/beta and
    embedding_table renamed) onto the base's parameters. Dense weights stored (in, out) are
    transposed by the mapping table, and every square weight's orientation is checked by
    output against the base. Unmapped checkpoint tensors and unset base parameters fail the
    conversion unless --allow-missing names them.

    Example: embedarena convert mindspore bge_ft.ckpt --base models/bge-small-zh-v1.5
    --out models/bge-ft --allow-missing 'bert.mlmloss.*' --verify test.jsonl
    """
    from embedarena.training.convert import convert_mindspore, read_texts

    if orientation not in ("output", "table"):
        raise ConfigError(f"--orientation is output or table, not {orientation!r}")
    texts = read_texts(verify_file, verify_n) if verify_file is not None else None
    res = convert_mindspore(ckpt, base, out, allow_missing=split_patterns(allow_missing),
                            orientation="output" if orientation == "output" else "table",
                            verify_texts=texts, mindspore_python=mindspore_python,
                            overwrite=overwrite)
    schemes = Counter(m.scheme for m in res.mapped)
    dropped = Counter(why.split(" (")[0] for why in res.dropped.values())
    say = console.print
    say(f"{len(res.mapped)} checkpoint tensors mapped onto {res.base} "
        f"({', '.join(f'{s} {n}' for s, n in schemes.items())}); dropped "
        f"{len(res.dropped)}" + (f" ({', '.join(f'{w} {n}' for w, n in dropped.items())})"
                                 if dropped else ""), markup=False)
    transposed = sum(m.in_out for m in res.mapped)
    verdicts = Counter(c.verdict for c in res.orientation)
    say(f"{transposed} dense weights transposed from (in, out); orientation check of "
        f"{len(res.orientation)} square weights: {verdicts['confirmed']} confirmed, "
        f"{verdicts['flipped']} flipped, {verdicts['inconclusive']} inconclusive", markup=False)
    for m in res.flipped:
        err_console.print(f"[yellow]flipped[/] {escape(m.ckpt)} → {escape(m.base)} "
                          f"(by {m.flipped_by}: the table's orientation did not fit)")
    if verdicts["inconclusive"]:
        err_console.print("[yellow]note:[/] some square weights are close to the base in "
                          "neither orientation (not fine-tuned from this base?): the mapping "
                          "table decided them")
    if res.casts:
        say("cast: " + ", ".join(f"{k} ({n})" for k, n in res.casts.items()), markup=False)
    if res.unmapped or res.unset:
        say(f"allowed: {len(res.unmapped)} unmapped checkpoint tensors, {len(res.unset)} "
            "base parameters kept from the base", markup=False)
    for p in res.unused_patterns:
        err_console.print(f"[yellow]note:[/] --allow-missing {escape(p)} matched nothing")
    if res.verify is not None:
        v = res.verify
        ms = (f"{v.vs_mindspore:.3g} vs the original checkpoint (read by MindSpore)"
              if v.vs_mindspore is not None else
              "not compared with the original checkpoint (no MindSpore)")
        say(f"verify ({v.texts} texts): max cosine difference {v.vs_base:.3g} vs the base (how "
            f"far training moved it); {ms}", markup=False)
        if v.vs_mindspore is None:
            err_console.print(f"[yellow]note:[/] {escape(v.mindspore_note)}")
    prefix = "reranker" if res.kind == "reranker" else "hf"
    say(f"{res.tensors} tensors ({res.parameters:,} parameters) in {res.output_dir}; load it "
        f"as {prefix}:{res.output_dir}", markup=False)
