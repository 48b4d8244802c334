"""`index build` under faults, as a user meets them: the node dying mid-build (a loopback
proxy in front of the real node, killed), SIGTERM and `kill -9` of the CLI, then `index list`,
`index delete <physical>`, `index prune` and the next build cleaning up; and `index build -e`
honouring `cache: false`.

The killed builds run as subprocesses (`python -m embedarena`), as a user starts them; the
rest runs in process through the `cli` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from embedarena.indexer.locks import LOCK_INDEX
from tests.conftest import CliResult

PROXY = Path(__file__).with_name("tcp_proxy.py")
N_DOCS = 60_000  # enough that a bm25 build is still loading when it is killed
LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("big") / "corpus.jsonl"
    words = ["thyroid", "nodule", "hypertension", "diabetes", "cirrhosis", "biopsy", "benign",
             "lesion", "chronic", "acute", "screening", "follow-up"]
    with p.open("w", encoding="utf-8") as f:
        for i in range(N_DOCS):
            text = " ".join(words[(i * k) % len(words)] for k in range(1, 9))
            f.write(json.dumps({"id": f"d{i}", "text": f"{text} {i}"}) + "\n")
    return p


@pytest.fixture
def env(es_node, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    return {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def _start(args: list[object], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "embedarena", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def _physical(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    got = client.indices.get_alias(index=f"{prefix}*", allow_no_indices=True,
                                   ignore_unavailable=True)
    return {k: v for k, v in got.items() if k != LOCK_INDEX}


def _wait_loading(client: Any, prefix: str, proc: subprocess.Popen[str],
                  timeout: float = 120) -> str:
    """The build's physical index, once documents are arriving in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for name in _physical(client, prefix):
            prim = client.indices.stats(index=name, metric="indexing")["_all"]["primaries"]
            if prim.get("indexing", {}).get("index_total", 0) > 0:
                return name
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the build never started loading")


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"did not stop in {timeout} s: {err[-2000:]}") from None
    return proc.returncode, out, err


@pytest.fixture
def proxy(es_node) -> Iterator[tuple[subprocess.Popen[str], str]]:  # noqa: ANN001
    """A loopback forwarder to the real node (its own process), stopped after the test."""
    port = int(es_node.url.rsplit(":", 1)[1])
    proc = subprocess.Popen([sys.executable, str(PROXY), str(port)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
    yield proc, url
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.es
def test_node_dying_mid_build_is_one_line_and_the_next_prune_cleans(  # noqa: PLR0913
        es_node, es_prefix: str, env: dict[str, str], big_corpus: Path,  # noqa: ANN001
        proxy: tuple[subprocess.Popen[str], str], cli: Callable[..., CliResult]) -> None:
    proc_proxy, url = proxy
    build = _start(["index", "build", "--model", "bm25", "--corpus", big_corpus,
                    "--prefix", es_prefix], {**env, "EMBEDARENA_ES_URL": url})
    index = _wait_loading(es_node.client, es_prefix, build)
    proc_proxy.kill()  # the "node" dies: connections drop, new ones are refused
    t0 = time.monotonic()
    code, out, err = _finish(build)
    took = time.monotonic() - t0
    # stderr: the build's own notes and progress lines, then one error line
    lines = [ln for ln in err.splitlines() if ln.strip()
             and not ln.startswith(("index bm25", "corpus: "))]
    assert code == 6, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and url in lines[0] and index in lines[0], lines
    assert err.rstrip().endswith(lines[0])
    assert "embedarena index prune" in lines[0]  # it could not remove its partial index
    assert took < 60

    # the partial index is still on the real node; its builder is gone: prune takes it
    assert index in _physical(es_node.client, es_prefix)
    listed = cli("index", "list", "--prefix", es_prefix, env=env)
    row = next(ln for ln in listed.stdout.splitlines() if index in ln)
    assert "orphan" in row
    pruned = cli("index", "prune", "--prefix", es_prefix, env=env)
    assert pruned.code == 0 and f"deleted 1 orphaned index(es): {index}" in pruned.stdout
    assert _physical(es_node.client, es_prefix) == {}
    assert not es_node.client.exists(index=LOCK_INDEX, id=f"build:{index}")  # its claim too


@pytest.mark.es
def test_sigterm_mid_build_cleans_up_like_ctrl_c(es_node, es_prefix: str,  # noqa: ANN001
                                                 env: dict[str, str],
                                                 big_corpus: Path) -> None:
    build = _start(["index", "build", "--model", "bm25", "--corpus", big_corpus,
                    "--prefix", es_prefix], env)
    index = _wait_loading(es_node.client, es_prefix, build)
    build.send_signal(signal.SIGTERM)
    code, out, err = _finish(build)
    assert code == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert _physical(es_node.client, es_prefix) == {}  # its partial index went with it
    assert not es_node.client.exists(index=LOCK_INDEX, id=f"build:{index}")


@pytest.mark.es
def test_kill_9_orphans_are_listed_deleted_by_name_and_pruned_by_the_next_build(
        es_node, es_prefix: str, env: dict[str, str], big_corpus: Path,  # noqa: ANN001
        cli: Callable[..., CliResult]) -> None:
    args = ["index", "build", "--model", "bm25", "--corpus", big_corpus, "--prefix", es_prefix]

    def killed_build() -> str:
        proc = _start(args, env)
        index = _wait_loading(es_node.client, es_prefix, proc)
        proc.kill()
        proc.wait(timeout=30)
        return index

    first = killed_build()
    listed = cli("index", "list", "--prefix", es_prefix, env=env)
    row = next(ln for ln in listed.stdout.splitlines() if first in ln)
    assert "orphan" in row and f"of {N_DOCS}" in row  # the live count, not the planned one
    gone = cli("index", "delete", first, "--yes", "--prefix", es_prefix, env=env)
    assert gone.code == 0 and f"deleted {first}" in gone.stdout
    assert _physical(es_node.client, es_prefix) == {}

    second = killed_build()
    corpus = big_corpus.parent / "small.json"
    corpus.write_text(json.dumps(LABELS, ensure_ascii=False), encoding="utf-8")
    res = cli("index", "build", "--model", "bm25", "--corpus", corpus, "--prefix", es_prefix,
              env=env)
    assert res.code == 0, res.stderr
    assert f"deleted 1 orphaned partial index(es) of {es_prefix}bm25" in res.stderr
    left = _physical(es_node.client, es_prefix)
    assert second not in left and len(left) == 1
    assert next(iter(left.values()))["aliases"] == {f"{es_prefix}bm25": {}}
    listed = cli("index", "list", "--prefix", es_prefix, env=env)
    row = next(ln for ln in listed.stdout.splitlines() if f"{es_prefix}bm25 " in ln)
    assert f" {len(LABELS)} " in row and "serving" in row


@pytest.mark.es
def test_index_build_from_an_experiment_with_cache_false_never_touches_the_cache(
        es_node, es_prefix: str, tmp_path: Path, tiny_bert_dir: Path,  # noqa: ANN001
        cli: Callable[..., CliResult]) -> None:
    corpus = tmp_path / "label.json"
    corpus.write_text(json.dumps(LABELS, ensure_ascii=False), encoding="utf-8")

    def experiment(cache: bool) -> Path:
        p = tmp_path / f"exp-{cache}.yaml"
        p.write_text(json.dumps({
            "name": "nocache", "corpus": {"path": str(corpus)}, "cache": cache,
            "index": {"prefix": es_prefix, "type": "flat"},
            "models": [{"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}]}),
            encoding="utf-8")
        return p

    home = tmp_path / "home"
    env = {**es_node.env, "EMBEDARENA_HOME": str(home)}
    res = cli("index", "build", "-e", experiment(False), env=env)
    assert res.code == 0, res.stderr
    assert "built" in res.stdout and "cache" not in res.stdout
    embeddings = home / "cache" / "embeddings"
    assert not embeddings.exists() or not any(embeddings.rglob("*"))  # nothing written

    # nothing read either: a cache folder that cannot be opened does not matter to it ...
    embeddings.parent.mkdir(parents=True, exist_ok=True)
    if embeddings.exists():
        embeddings.rmdir()
    embeddings.write_text("not a folder")
    res = cli("index", "build", "-e", experiment(False), "--force", env=env)
    assert res.code == 0, res.stderr
    # ... while the same experiment with the cache on does open it (the trap is real)
    assert cli("index", "build", "-e", experiment(True), "--force", env=env).code != 0
