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

`kind: reranker` trains a cross-encoder instead (`embedarena train reranker`: `loss`,
`train_group_size`, `max_len`, ...), from a reranker dir or any encoder dir (`minilm`); it is
written inside a two-stage entry, or flat with `retriever:`/`top_n:` beside `finetune:`
(see `embedarena.experiment`), and mining defaults to the two-stage row's retriever, so the
negatives are the candidates the reranker will see.

The entry is parsed once into a `FinetuneSpec`; the experiment adds its base model when the
list does not have it, so the comparison is base vs fine-tuned. At run time the arena calls
`FinetuneSpec.materialize`, which trains when needed and returns the `hf` spec of the trained
model. The output dir is keyed by a hash of the base model's fingerprint, the training
files' contents and every mining/training setting: an unchanged entry reuses the model it
built before; any change trains a new one beside it.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from embedarena.embedders.hf import HFSpec
from embedarena.embedders.registry import parse_embedder_spec
from embedarena.embedders.reranker import RerankerSpec, looks_like_cross_encoder
from embedarena.errors import ConfigError
from embedarena.names import slug
from embedarena.specs import ModelSpec, parse_spec, register_spec

#: Marker written last, so a crashed training is never mistaken for a finished one.
COMPLETE = ".complete"
#: TrainConfig fields an experiment file may not set (the plan sets them).
_PLANNED = {"model", "train", "output_dir", "resume_from_checkpoint", "progress"}
#: MineConfig fields an experiment file may not set.
_MINE_PLANNED = {"cache", "index_prefix"}


Kind = Literal["embedder", "reranker"]


def train_setting_names(kind: Kind = "embedder") -> list[str]:
    """Training settings a `finetune:` entry may set (the rest is planned)."""
    if kind == "reranker":
        from embedarena.training.reranker import RerankerConfig

        return sorted(set(RerankerConfig.setting_names()) - _PLANNED)
    from embedarena.training.embedder import TrainConfig

    return sorted(set(TrainConfig.setting_names()) - _PLANNED)


def mine_setting_names() -> list[str]:
    from embedarena.training.mining import MineConfig

    return sorted({f.name for f in dataclasses.fields(MineConfig)} - _MINE_PLANNED)


def _resolve(base_dir: Path | None, p: str | Path) -> Path:
    q = Path(p).expanduser()
    if q.is_absolute():
        return q
    return ((base_dir or Path.cwd()) / q).resolve()


def _base_dir(info: ValidationInfo) -> Path | None:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else None


class FinetuneSettings(BaseModel):
    """The `finetune:` mapping: base model, training files, optional mining, and any
    `train embedder` setting (checked by name against the trainer's settings)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Kind = "embedder"
    base: HFSpec | RerankerSpec
    train: list[Path] = Field(min_length=1)
    mine: dict[str, Any] | None = None

    @field_validator("base", mode="before")
    @classmethod
    def _base(cls, v: Any, info: ValidationInfo) -> Any:
        if (info.data.get("kind") == "reranker" and isinstance(v, str)
                and not v.startswith(("hf:", "reranker:")) and v != "minilm"):
            # a bare path: a cross-encoder dir keeps its head; an encoder dir gets a new one
            v = f"reranker:{v}" if looks_like_cross_encoder(v) else f"hf:{v}"
        spec = (parse_spec(v, allowed=(HFSpec, RerankerSpec))
                if info.data.get("kind") == "reranker" else parse_embedder_spec(v))
        if not isinstance(spec, HFSpec | RerankerSpec):
            raise ValueError(f"only hf models can be fine-tuned, not '{spec.type}'")
        return spec

    @field_validator("train", mode="before")
    @classmethod
    def _train(cls, v: Any, info: ValidationInfo) -> Any:
        items = [v] if isinstance(v, str | Path) else v
        if not isinstance(items, list):
            raise ValueError("train is a JSONL file or a list of them")
        out = []
        for t in items:
            p = _resolve(_base_dir(info), t)
            if not p.is_file():
                raise ValueError(f"training file {p} does not exist")
            out.append(p)
        return out

    @field_validator("mine", mode="before")
    @classmethod
    def _mine(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return None
        if not isinstance(v, dict):
            raise ValueError("finetune.mine is a mapping (range_for_sampling, negative_number, "
                             "...)")
        bad = set(v) - set(mine_setting_names())
        if bad:
            raise ValueError(f"unknown finetune.mine settings {sorted(bad)}; allowed: "
                             f"{', '.join(mine_setting_names())}")
        m = dict(v)
        if m.get("candidate_pool"):
            m["candidate_pool"] = str(_resolve(_base_dir(info), m["candidate_pool"]))
        return m

    @model_validator(mode="after")
    def _train_args(self) -> FinetuneSettings:
        if self.kind == "embedder" and isinstance(self.base, RerankerSpec):
            raise ValueError("an embedder is fine-tuned from an hf model, not a reranker "
                             "(kind: reranker trains cross-encoders)")
        allowed = train_setting_names(self.kind)
        bad = set(self.train_args) - set(allowed)
        if bad:
            raise ValueError(f"unknown finetune settings {sorted(bad)}; allowed: kind, base, "
                             f"train, mine, {', '.join(allowed)}")
        return self

    @property
    def train_args(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


@register_spec(key="finetune")
class FinetuneSpec(ModelSpec):
    """A model that is the base fine-tuned on `train` (mined first when `mine` is given).

    Other keys of the entry (`batch_size`, `device`, ... for encoding) go to the resulting
    `hf` model.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    type: Literal["finetune"] = "finetune"
    finetune: FinetuneSettings

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(
                data.get("finetune"), dict) and data["finetune"].get("base") is not None:
            base = data["finetune"]["base"]
            name = (str(base).rstrip("/").rsplit("/", 1)[-1].removeprefix("reranker:")
                    if data["finetune"].get("kind") == "reranker" and isinstance(base, str)
                    else parse_embedder_spec(base).name)
            data = {**data, "name": f"{name}-ft"}
        return data

    @model_validator(mode="after")
    def _extras(self) -> FinetuneSpec:
        target = self.target_class
        allowed = set(target.allowed_keys()) - {"name", "type", "path"}
        bad = set(self.model_settings) - allowed
        if bad:
            raise ValueError(f"unknown settings {sorted(bad)} beside finetune (they go to the "
                             f"fine-tuned {target.type_name()} model); allowed: "
                             f"{', '.join(sorted(allowed))}")
        return self

    @property
    def target_class(self) -> builtins.type[HFSpec] | builtins.type[RerankerSpec]:
        """What the trained model becomes: an `hf` embedder or a `reranker`."""
        return RerankerSpec if self.finetune.kind == "reranker" else HFSpec

    @property
    def model_settings(self) -> dict[str, Any]:
        """The entry's other keys: settings of the resulting model."""
        return dict(self.__pydantic_extra__ or {})

    @property
    def base(self) -> HFSpec | RerankerSpec:
        return self.finetune.base

    def implied(self, names: set[str]) -> tuple[list[tuple[ModelSpec, str]], ModelSpec]:
        """An embedder fine-tune brings its base to compare against (a reranker's base is
        compared through two-stage rows, not as an entry)."""
        if self.finetune.kind == "reranker" or self.base.name in names:
            return [], self
        return [(self.base, "base model")], self

    def materialize(self, out_root: Path | None, *, train: bool = True,
                    log: Callable[[str], None] = lambda _: None,
                    mine_model: ModelSpec | None = None, **_: Any) -> HFSpec | RerankerSpec:
        """The spec of the trained model (`hf`, or `reranker` for kind reranker), training it
        first when `train` and it is not there yet (with `train=False` the path may not exist:
        the entry is not run). `mine_model` is the mining model when `mine` names none (a
        two-stage row passes its retriever)."""
        if out_root is None:
            raise ConfigError(f"model '{self.name}' is trained into a folder: give the "
                              "experiment an output folder (out)")
        plan = plan_finetune(self, out_root, mine_model)
        if train:
            run_finetune(plan, log=log)
        return plan.spec()


@dataclasses.dataclass
class FinetunePlan:
    entry: FinetuneSpec
    out_dir: Path
    key: str
    mine_model: ModelSpec | None = None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def base_name(self) -> str:
        return self.entry.base.name

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"

    @property
    def done(self) -> bool:
        return (self.out_dir / COMPLETE).is_file()

    def spec(self) -> HFSpec | RerankerSpec:
        """The `hf` (or `reranker`) model entry the fine-tuned model becomes."""
        return self.entry.target_class.model_validate({
            **self.entry.model_settings, "name": self.name, "path": str(self.model_dir)})


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _base_fingerprint(base: HFSpec | RerankerSpec) -> str:
    if isinstance(base, RerankerSpec):
        from embedarena.embedders.reranker import create_reranker

        return create_reranker(base).fingerprint
    from embedarena.embedders.registry import create_embedder

    return create_embedder(base).fingerprint


def plan_finetune(entry: FinetuneSpec, out_root: Path,
                  mine_model: ModelSpec | None = None) -> FinetunePlan:
    """Decide the entry's output dir from everything that shapes the model (nothing is
    trained here)."""
    ft = entry.finetune
    mine = ft.mine
    if mine is not None and "model" not in mine:
        if mine_model is None and ft.kind == "reranker":
            raise ConfigError(f"model '{entry.name}': finetune.mine needs a model (a "
                              "cross-encoder cannot search); inside a two-stage row it "
                              "defaults to the retriever")
        if mine_model is not None:
            mine = {**mine, "model": mine_model}
    payload: dict[str, Any] = {
        "base": _base_fingerprint(ft.base), "base_settings": ft.base.public_dict(),
        "train": [_file_sha(p) for p in ft.train],
        "pool": _file_sha(Path(mine["candidate_pool"])) if mine and mine.get("candidate_pool")
        else None,
        "mine": {k: v for k, v in (mine or {}).items() if k != "candidate_pool"} or None,
        "args": ft.train_args,
    }
    if ft.kind == "reranker":  # embedder keys stay as they were (reused models stay reused)
        payload["kind"] = "reranker"
        if mine is not None and isinstance(mine.get("model"), ModelSpec):
            payload["mine"] = {**payload["mine"], "model": mine["model"].public_dict()}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str,
                                    ensure_ascii=False).encode()).hexdigest()[:12]
    return FinetunePlan(entry, out_root / "finetune" / f"{slug(entry.name, 'model')}-{key}",
                        key, mine_model=mine.get("model") if mine else None)


def run_finetune(plan: FinetunePlan, log: Callable[[str], None] = lambda _: None) -> Path:
    """Mine (if asked) and train, unless this exact plan finished before; returns the model."""
    if plan.done:
        log(f"{plan.name}: reusing the fine-tuned model in {plan.model_dir}")
        return plan.model_dir
    from embedarena.data.readers import load_train, write_jsonl
    from embedarena.training.mining import MineConfig, load_pool, mine, parse_range

    ft = plan.entry.finetune
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    train_files = [str(p) for p in ft.train]
    args = ft.train_args
    if ft.mine is not None:
        m = dict(ft.mine)
        if "range_for_sampling" in m:
            m["range_for_sampling"] = parse_range(m["range_for_sampling"])
        m.setdefault("model", plan.mine_model or ft.base)
        m.setdefault("query_instruction", args.get("query_instruction", ""))
        cfg = MineConfig(**m)
        rows = [ex for p in ft.train for ex in load_train(p)]
        pool = load_pool(cfg.candidate_pool) if cfg.candidate_pool else None
        who = getattr(cfg.model, "name", cfg.model)
        log(f"{plan.name}: mining hard negatives for {len(rows)} rows with {who} …")
        mined, stats = mine(rows, cfg, pool)
        mined_path = plan.out_dir / "train.mined.jsonl"
        write_jsonl(mined_path, mined)
        log(f"{plan.name}: mined {stats.negatives_written} negatives for {stats.rows} rows "
            f"({stats.rows_with_too_few} with fewer than {cfg.negative_number}; "
            f"{stats.dropped_gold_other_rows} gold labels of other rows kept out)")
        train_files = [str(mined_path)]
    if isinstance(args.get("report_to"), str):
        args["report_to"] = [r.strip() for r in args["report_to"].split(",") if r.strip()]
    log(f"{plan.name}: training {ft.kind} from {plan.base_name} …")
    if ft.kind == "reranker":
        from embedarena.training.reranker import RerankerConfig, train_reranker

        res = train_reranker(RerankerConfig(model=ft.base.path, train=train_files,
                                            output_dir=str(plan.model_dir), **args), log=log)
    else:
        from embedarena.training.embedder import TrainConfig, train_embedder

        res = train_embedder(TrainConfig(model=ft.base.path, train=train_files,
                                         output_dir=str(plan.model_dir), **args), log=log)
    (plan.out_dir / "plan.json").write_text(json.dumps({
        "name": plan.name, "key": plan.key, "base": ft.base.public_dict(),
        "train": train_files, "mine": ft.mine, "args": ft.train_args,
        "global_step": res.global_step,
        "final_loss": res.losses[-1][1] if res.losses else None}, indent=2, default=str,
        ensure_ascii=False), encoding="utf-8")
    (plan.out_dir / COMPLETE).write_text("")
    return plan.model_dir

