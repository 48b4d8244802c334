"""Cross-device negatives: 2 CPU processes (gloo) give the 1-process gradient on the full batch.

Also a real 2-process `torchrun` training run (slow).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from embedarena.training.data import GroupCollator, GroupDataset  # noqa: E402
from embedarena.training.embedder import encode, freeze_unused  # noqa: E402
from embedarena.training.losses import InfoNCELoss  # noqa: E402
from tests.training.conftest import toy_rows, write_jsonl  # noqa: E402

GROUP = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch(model_dir: Path, n: int = 8) -> dict[str, object]:
    from transformers import AutoTokenizer

    from embedarena.data.readers import TrainExample

    rows = [TrainExample(r["query"], r["pos"], r["neg"])  # type: ignore[arg-type]
            for r in toy_rows(n)]
    # Two queries share a label, so masking across devices is exercised too.
    rows[5] = TrainExample(rows[5].query, [rows[1].pos[0]], rows[5].neg)
    rows[1] = TrainExample(rows[1].query, rows[1].pos, rows[1].neg)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = GroupDataset(rows, train_group_size=GROUP)
    return GroupCollator(tok, 32, 32)([ds[i] for i in range(len(ds))])


def _slice(batch: dict[str, object], rank: int, world: int) -> dict[str, object]:
    n = batch["query"]["input_ids"].shape[0]  # type: ignore[index]
    b = n // world
    qs, ps = slice(rank * b, (rank + 1) * b), slice(rank * b * GROUP, (rank + 1) * b * GROUP)
    return {"query": {k: v[qs] for k, v in batch["query"].items()},  # type: ignore[attr-defined]
            "passage": {k: v[ps] for k, v in batch["passage"].items()},  # type: ignore[attr-defined]
            "passage_keys": batch["passage_keys"][ps],  # type: ignore[index]
            "query_gold": batch["query_gold"][qs],  # type: ignore[index]
            "query_gold_mask": batch["query_gold_mask"][qs]}  # type: ignore[index]


def _grads(model: torch.nn.Module, batch: dict[str, object],
           cross_device: bool) -> dict[str, torch.Tensor]:
    q = encode(model, batch["query"], "mean", True)  # type: ignore[arg-type]
    p = encode(model, batch["passage"], "mean", True)  # type: ignore[arg-type]
    loss = InfoNCELoss(temperature=0.05, cross_device=cross_device)(
        q, p, GROUP, batch["passage_keys"], batch["query_gold"], batch["query_gold_mask"])
    loss.backward()
    inner = getattr(model, "module", model)
    return {n: p.grad.detach().clone() for n, p in inner.named_parameters()
            if p.grad is not None}


def _worker(rank: int, world: int, port: int, model_dir: str, out: str,
            cross_device: bool) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from transformers import AutoModel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = AutoModel.from_pretrained(model_dir)
        assert freeze_unused(model), "BERT's pooler is frozen"
        ddp = DistributedDataParallel(model)
        batch = _slice(_batch(Path(model_dir)), rank, world)
        grads = _grads(ddp, batch, cross_device)
        torch.save(grads, Path(out) / f"grads{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("cross_device", [True, False])
def test_two_process_gradient_equals_one_process(tiny_encoder: Path, tmp_path: Path,
                                                 cross_device: bool) -> None:
    import torch.multiprocessing as mp
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_encoder)
    single = _grads(model, _batch(tiny_encoder), cross_device=False)
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_encoder), str(tmp_path), cross_device),
             nprocs=2, join=True)
    g0 = torch.load(tmp_path / "grads0.pt")
    g1 = torch.load(tmp_path / "grads1.pt")
    for n in single:  # DDP all-reduced: both processes hold the same averaged gradient
        assert torch.allclose(g0[n], g1[n], atol=1e-7), n
    same = all(torch.allclose(g0[n], single[n], atol=1e-6, rtol=1e-4) for n in single)
    # With cross-device negatives the update is the 1-process update on the whole batch;
    # without them each process sees only its own half, a different (weaker) objective.
    assert same is cross_device


@pytest.mark.slow
def test_torchrun_two_processes_trains(tiny_encoder: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(16))
    out = tmp_path / "out"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "embedarena", "train", "embedder", "-m", str(tiny_encoder), "-t", str(train),
           "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--train-group-size", "2",
           "--report-to", "none", "--cpu", "--lr", "1e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    # The children's own tracebacks come first in stderr, torchrun's summary last.
    assert proc.returncode == 0, proc.stderr[:4000] + "\n...\n" + proc.stdout[-2000:]
    assert "trained 3 steps" in proc.stdout
    state = (out / "trainer_state.json").read_text()
    assert '"global_step": 3' in state
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
    meta = (out / "embedarena_training.json").read_text()
    assert '"world_size": 2' in meta
