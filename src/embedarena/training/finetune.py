"""`finetune:` model entries of an experiment file: mine → train → an ordinary `hf` model.

```yaml
models:
  - minilm
  - name: minilm-ft
    finetune:
      base: minilm                      # any hf model entry (inline or mapping)
      train: data/train.jsonl           # one or a list; FlagEmbedding train JSONL
      mine: {range_for_sampling: 2-100, negative_number: 7}   # optional; model: the base
      epochs: 2
      batch_size: 32
      train_group_size: 4
```

`embedarena run` turns each such entry into `{name, type: hf, path: <trained dir>}` before
indexing, and adds the base model when the experiment does not list it, so the comparison is
base vs fine-tuned. The output dir is keyed by a hash of the base model's fingerprint, the
training files' contents and every mining/training setting: an unchanged entry reuses the
model it built before; any change trains a new one beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedarena.errors import ConfigError

#: Marker written last, so a crashed training is never mistaken for a finished one.
COMPLETE = ".complete"
#: TrainConfig fields an experiment file may not set (the plan sets them).
_PLANNED = {"model", "train", "output_dir", "resume_from_checkpoint", "progress"}
_MINE_KEYS = {"model", "range_for_sampling", "negative_number", "candidate_pool",
              "query_instruction", "seed", "margin", "backend", "use_gpu"}


def is_finetune_entry(raw: Any) -> bool:
    return isinstance(raw, dict) and "finetune" in raw


@dataclasses.dataclass
class FinetunePlan:
    name: str
    base: Any
    base_name: str
    base_path: str
    train: list[Path]
    mine: dict[str, Any] | None
    args: dict[str, Any]
    spec_extra: dict[str, Any]
    out_dir: Path
    key: str

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"

    @property
    def done(self) -> bool:
        return (self.out_dir / COMPLETE).is_file()

    def entry(self) -> dict[str, Any]:
        """The `hf` model entry the fine-tuned model becomes."""
        return {**self.spec_extra, "name": self.name, "type": "hf", "path": str(self.model_dir)}


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name, flags=re.UNICODE).strip("-.") or "model"


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan_finetune(raw: dict[str, Any], base_dir: Path, out_root: Path) -> FinetunePlan:
    """Validate a `finetune:` entry and decide its output dir (nothing is trained here)."""
    from embedarena.embedders.base import create_embedder
    from embedarena.embedders.spec import HFSpec, parse_model_spec
    from embedarena.training.embedder import TrainConfig

    ft = raw.get("finetune")
    label = raw.get("name") or "?"
    if not isinstance(ft, dict):
        raise ConfigError(f"model '{label}': finetune is a mapping with base, train, "
                          "optional mine and training settings")
    ft = dict(ft)
    if "base" not in ft or "train" not in ft:
        raise ConfigError(f"model '{label}': finetune needs 'base' (a model) and 'train' "
                          "(train JSONL file or list)")
    base = ft.pop("base")
    base_spec = parse_model_spec(base)
    if not isinstance(base_spec, HFSpec):
        raise ConfigError(f"model '{label}': only hf models can be fine-tuned, not "
                          f"'{base_spec.type}'")
    trains = ft.pop("train")
    trains = [trains] if isinstance(trains, str) else list(trains)
    train_paths = [_resolve(base_dir, t) for t in trains]
    for p in train_paths:
        if not p.is_file():
            raise ConfigError(f"model '{label}': training file {p} does not exist")
    mine = ft.pop("mine", None)
    if mine is not None:
        if not isinstance(mine, dict):
            raise ConfigError(f"model '{label}': finetune.mine is a mapping (range_for_sampling, "
                              "negative_number, ...)")
        bad = set(mine) - _MINE_KEYS
        if bad:
            raise ConfigError(f"model '{label}': unknown finetune.mine settings {sorted(bad)}; "
                              f"allowed: {', '.join(sorted(_MINE_KEYS))}")
        mine = dict(mine)
        if mine.get("candidate_pool"):
            mine["candidate_pool"] = str(_resolve(base_dir, mine["candidate_pool"]))
    allowed = {f.name for f in dataclasses.fields(TrainConfig)} - _PLANNED
    bad = set(ft) - allowed
    if bad:
        raise ConfigError(f"model '{label}': unknown finetune settings {sorted(bad)}; allowed: "
                          f"base, train, mine, {', '.join(sorted(allowed))}")
    name = str(raw.get("name") or f"{base_spec.name}-ft")
    spec_extra = {k: v for k, v in raw.items() if k not in ("finetune", "name", "type", "path")}
    fingerprint = create_embedder(base_spec).fingerprint
    payload = {
        "base": fingerprint, "base_settings": base_spec.public_dict(),
        "train": [_file_sha(p) for p in train_paths],
        "pool": _file_sha(Path(mine["candidate_pool"])) if mine and mine.get("candidate_pool")
        else None,
        "mine": {k: v for k, v in (mine or {}).items() if k != "candidate_pool"} or None,
        "args": ft,
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str,
                                    ensure_ascii=False).encode()).hexdigest()[:12]
    out_dir = out_root / "finetune" / f"{_slug(name)}-{key}"
    return FinetunePlan(name, base, base_spec.name, base_spec.path, train_paths, mine, ft,
                        spec_extra, out_dir, key)


def _resolve(base_dir: Path, p: str | Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base_dir / q).resolve()


def run_finetune(plan: FinetunePlan, log: Callable[[str], None] = print,
                 console: Any = None) -> Path:
    """Mine (if asked) and train, unless this exact plan finished before; returns the model."""
    if plan.done:
        log(f"{plan.name}: reusing the fine-tuned model in {plan.model_dir}")
        return plan.model_dir
    from embedarena.data.readers import load_train, write_jsonl
    from embedarena.training.embedder import TrainConfig, train_embedder
    from embedarena.training.mining import MineConfig, load_pool, mine, parse_range

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    train_files = [str(p) for p in plan.train]
    if plan.mine is not None:
        m = dict(plan.mine)
        if "range_for_sampling" in m:
            m["range_for_sampling"] = parse_range(m["range_for_sampling"])
        m.setdefault("model", plan.base)
        m.setdefault("query_instruction", plan.args.get("query_instruction", ""))
        cfg = MineConfig(**m)
        rows = [ex for p in plan.train for ex in load_train(p)]
        pool = load_pool(cfg.candidate_pool) if cfg.candidate_pool else None
        log(f"{plan.name}: mining hard negatives for {len(rows)} rows with "
            f"{plan.base_name} …")
        mined, stats = mine(rows, cfg, pool)
        mined_path = plan.out_dir / "train.mined.jsonl"
        write_jsonl(mined_path, mined)
        log(f"{plan.name}: mined {stats.negatives_written} negatives for {stats.rows} rows "
            f"({stats.rows_with_too_few} with fewer than {cfg.negative_number}; "
            f"{stats.dropped_gold_other_rows} gold labels of other rows kept out)")
        train_files = [str(mined_path)]
    args = dict(plan.args)
    if isinstance(args.get("report_to"), str):
        args["report_to"] = [r.strip() for r in args["report_to"].split(",") if r.strip()]
    cfg_t = TrainConfig(model=plan.base_path, train=train_files,
                        output_dir=str(plan.model_dir), **args)
    log(f"{plan.name}: training from {plan.base_name} …")
    res = train_embedder(cfg_t, console=console, log=log)
    (plan.out_dir / "plan.json").write_text(json.dumps({
        "name": plan.name, "key": plan.key, "base": plan.base, "train": train_files,
        "mine": plan.mine, "args": plan.args, "global_step": res.global_step,
        "final_loss": res.losses[-1][1] if res.losses else None}, indent=2, default=str,
        ensure_ascii=False), encoding="utf-8")
    (plan.out_dir / COMPLETE).write_text("")
    return plan.model_dir


def expand_finetune_entries(models: list[Any], base_dir: Path, out_root: Path,
                            log: Callable[[str], None] = print, console: Any = None,
                            only: list[str] | None = None,
                            add_base: bool = True) -> list[Any]:
    """Replace each `finetune:` entry by the `hf` entry of its trained model (training it when
    needed), adding its base model when the list does not have it.

    With `only`, entries outside it are planned but not trained (their path may not exist yet;
    they are not run either).
    """
    from embedarena.embedders.spec import parse_model_spec

    if not any(is_finetune_entry(m) for m in models):
        return list(models)
    names = {parse_model_spec(m).name for m in models if not is_finetune_entry(m)}
    out: list[Any] = []
    for m in models:
        if not is_finetune_entry(m):
            out.append(m)
            continue
        plan = plan_finetune(m, base_dir, out_root)
        if add_base and plan.base_name not in names:
            out.append(plan.base)
            names.add(plan.base_name)
            log(f"{plan.name}: added its base model '{plan.base_name}' to compare against")
        if only is None or plan.name in only:
            run_finetune(plan, log=log, console=console)
        out.append(plan.entry())
    return out
