"""Issue 12 as a user meets it, through the real `main()` against the real node and a loopback
server speaking the Azure embeddings API: cache counts on every re-run (item 17), embedder
failures that name the batch (item 6), and the secret-leak test: a full experiment with a
recognisable fake Azure key and the node's password (given only inside the URL), after which
no artifact, output or exception text holds either.
"""

from __future__ import annotations

import base64
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import CliResult
from tests.embedders.azure_server import EmbeddingAPIServer, Failure

pytest.importorskip("openai")

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]
QUERIES = [
    {"query": "脖子前面有个肿块，B超说是结节", "pos": ["甲状腺结节"]},
    {"query": "甲状腺结节穿刺结果是恶性", "pos": ["甲状腺结节", "甲状腺癌"]},
    {"query": "右上腹痛发烧黄疸", "pos": ["胆管炎"]},
    {"query": "血糖高口渴多尿", "pos": ["糖尿病"]},
    {"query": "血压160/100头晕", "pos": ["高血压"]},
]
#: Recognisable on sight and in any artifact: a leak of it cannot be a coincidence.
FAKE_AZURE_KEY = "AZKEY-LEAKCHECK-5f1e0c7b-do-not-print"


def _data(d: Path, labels: list[str] = LABELS) -> None:
    (d / "label.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    (d / "test.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in QUERIES), encoding="utf-8")


@pytest.fixture
def azure_api() -> Iterator[EmbeddingAPIServer]:
    with EmbeddingAPIServer(api_key=FAKE_AZURE_KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_real_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's and our retry waits are recorded, not slept (the server is local)."""
    import openai._base_client as sdk

    from embedarena.embedders import azure_openai as az

    class Clock:
        def __getattr__(self, name: str) -> object:
            import time

            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            return None

    monkeypatch.setattr(sdk, "time", Clock())
    monkeypatch.setattr(az, "_pause", lambda s: None)
    for var in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def _experiment(d: Path, prefix: str, endpoint: str, report: bool = True) -> Path:
    exp = d / "exp.yaml"
    exp.write_text(
        "name: leak\n"
        "corpus: {path: label.json}\n"
        "queries: [{path: test.jsonl, name: labels}]\n"
        "metrics: [precise@1, precise@5, hit@5, mrr@10]\n"
        f"index: {{type: flat, prefix: {prefix}}}\n"
        "models:\n"
        "  - bm25\n"
        "  - {name: az-small, type: azure_openai, deployment: text-embedding-3-small, "
        f"dimensions: 8, azure_endpoint: '{endpoint}', max_attempts: 3}}\n"
        + ("report: {baseline: bm25, formats: [md, xlsx, html]}\n" if report else ""),
        encoding="utf-8")
    return exp


# -- item 17: every re-run says what it reused --------------------------------------------------
@pytest.mark.es
def test_index_build_and_run_print_cache_counts(cli: Callable[..., CliResult], es_node,  # noqa: ANN001
                                                es_prefix: str, tiny_bert_dir: Path,
                                                tmp_path: Path) -> None:
    _data(tmp_path)
    env = {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}
    model = f"hf:{tiny_bert_dir}"
    args = ("index", "build", "--model", model, "--corpus", tmp_path / "label.json",
            "--prefix", es_prefix, "--type", "flat")
    first = cli(*args, env=env)
    assert first.code == 0, first.stderr
    assert f"embedding cache: 0 hits, {len(LABELS)} embedded" in first.stdout
    forced = cli(*args, "--force", env=env)
    assert forced.code == 0, forced.stderr
    assert f"embedding cache: {len(LABELS)} hits, 0 embedded" in forced.stdout

    exp = tmp_path / "exp.yaml"
    exp.write_text("name: counts\ncorpus: {path: label.json}\n"
                   "queries: [{path: test.jsonl}]\nmetrics: [precise@1]\n"
                   f"index: {{type: flat, prefix: {es_prefix}}}\n"
                   f"models: [{{name: tiny, type: hf, path: '{tiny_bert_dir}'}}]\n",
                   encoding="utf-8")
    run1 = cli("run", exp, env=env)
    assert run1.code == 0, run1.stderr
    # a new alias (another model name), but the same fingerprint: documents from the cache
    assert f"embedding cache: {len(LABELS)} hits, {len(QUERIES)} embedded" in run1.stderr
    run2 = cli("run", exp, env=env)
    assert run2.code == 0, run2.stderr
    assert f"reused index {es_prefix}" in run2.stderr
    assert f"embedding cache: {len(QUERIES)} hits, 0 embedded" in run2.stderr


# -- item 6: a failing batch of a corpus is named ----------------------------------------------
@pytest.mark.es
def test_azure_500_during_index_build_names_the_batch(cli: Callable[..., CliResult], es_node,  # noqa: ANN001
                                                      es_prefix: str,
                                                      azure_api: EmbeddingAPIServer,
                                                      tmp_path: Path) -> None:
    labels = [f"label {i:04d}" for i in range(600)]  # 3 batches of 256 documents
    _data(tmp_path, labels)
    exp = _experiment(tmp_path, es_prefix, azure_api.url, report=False)
    env = {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home"),
           "AZURE_OPENAI_API_KEY": FAKE_AZURE_KEY}
    azure_api.fail_next(Failure(200), Failure(200), *[Failure(500)] * 3)
    proc = cli("index", "build", "-e", exp, "--model", "az-small", env=env)
    assert proc.code == 7, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [
        f"error: model 'az-small', document batch 3/3, texts 513–600 (first id 'label 0512'): "
        f"Azure OpenAI at {azure_api.url}: HTTP 500 on all 3 attempts for "
        "'text-embedding-3-small'; giving up"], proc.stderr
    assert "Traceback" not in proc.stderr

    # a re-run embeds only the failed batch: the first two came from the cache
    azure_api.reset()
    again = cli("index", "build", "-e", exp, "--model", "az-small", env=env)
    assert again.code == 0, again.stderr
    assert "embedding cache: 512 hits, 88 embedded" in again.stdout
    assert [r.n_inputs for r in azure_api.embedding_requests()] == [88]


# -- the secret-leak test -------------------------------------------------------------------
def _texts_of(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every byte an artifact holds, xlsx members unzipped (the zip would hide a leak)."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                yield f"{path}!{member}", zf.read(member)


def _forms(secret: str) -> list[bytes]:
    """The ways a secret can show up: as is, URL-quoted, JSON-escaped, and inside a basic
    auth header."""
    return sorted({secret.encode(), quote(secret, safe="").encode(),
                   json.dumps(secret)[1:-1].encode(),
                   base64.b64encode(f"elastic:{secret}".encode())})


@pytest.mark.es
def test_no_secret_reaches_any_artifact(cli: Callable[..., CliResult], es_node,  # noqa: ANN001
                                        es_prefix: str, azure_api: EmbeddingAPIServer,
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full experiment (BM25 + an Azure deployment, report in every format), then
    compare/report/index commands and the failure paths (a retried 5xx, a server that echoes
    the key, a wrong ES password in the URL, a key pasted into api_key_env, ES unreachable):
    neither the Azure key nor the ES password appears in any file written (run dirs,
    meta.json, reports, xlsx members, the embedding cache, the node-side index metadata), in
    any output, log record or exception text."""
    caplog.set_level(logging.DEBUG)
    es_password = es_node.password
    wrong_es_password = "ESPW-WRONG-LEAKCHECK-91c2"
    host = es_node.url.split("://", 1)[1]
    url = f"http://elastic:{quote(es_password, safe='')}@{host}"
    work = tmp_path / "work"
    work.mkdir()
    _data(work)
    exp = _experiment(work, es_prefix, azure_api.url)
    env = {"EMBEDARENA_ES_URL": url, "EMBEDARENA_ES_USERNAME": None,
           "EMBEDARENA_ES_PASSWORD": None, "EMBEDARENA_ES_PASSWORD_FILE": None,
           "EMBEDARENA_HOME": str(tmp_path / "home"), "AZURE_OPENAI_API_KEY": FAKE_AZURE_KEY,
           "HOME": str(tmp_path)}
    outputs: list[CliResult] = []

    def run(*args: object, code: int | None = 0, **overrides: str | None) -> CliResult:
        proc = cli(*args, env={**env, **overrides}, cwd=work)
        outputs.append(proc)
        if code is not None:
            assert proc.code == code, proc.stdout + proc.stderr
        return proc

    azure_api.fail_next(Failure(500))  # one retried 5xx: a warning is logged
    run("run", exp)
    out = work / "runs" / "leak"
    assert (out / "report" / "report.xlsx").is_file() and (out / "report" / "report.html").is_file()
    assert any("retrying" in p.stderr for p in outputs)
    run("run", exp, "--no-report")  # the reuse path
    run("compare", out)
    run("report", out, "--out", tmp_path / "report2", "--resamples", "200")
    run("index", "list", "--prefix", es_prefix)
    run("index", "info", "az-small", "--prefix", es_prefix)
    run("es", "status")

    # failure paths: each one line, none quoting a secret
    echo = f"Bad input for key {FAKE_AZURE_KEY}"
    azure_api.fail_next(Failure(422, body={"error": {"message": echo}}))
    failed = run("eval", "--model", "azure:text-embedding-3-large@8", "--queries",
                 work / "test.jsonl", "--corpus", work / "label.json", "--prefix", es_prefix,
                 "--out", tmp_path / "eval-fail", code=None,
                 AZURE_OPENAI_ENDPOINT=azure_api.url)
    assert failed.code == 7 and "rejected the request" in failed.stderr, failed.stderr
    wrong = f"http://elastic:{wrong_es_password}@{host}"
    bad_es = run("index", "list", code=6, EMBEDARENA_ES_URL=wrong)
    assert "authentication failed" in bad_es.stderr
    run("es", "status", code=None, EMBEDARENA_ES_URL=f"http://elastic:{wrong_es_password}"
        "@127.0.0.1:1", EMBEDARENA_ES_MAX_RETRIES="0")
    pasted = work / "pasted.yaml"
    pasted.write_text(exp.read_text(encoding="utf-8").replace(
        "max_attempts: 3", f"max_attempts: 3, api_key_env: {FAKE_AZURE_KEY.replace('-', '')}"),
        encoding="utf-8")
    refused = run("run", pasted, code=2)
    assert "looks like a key" in refused.stderr

    # what the node stores about our indexes (the _meta of every index)
    node_side = json.dumps(es_node.client.indices.get_mapping(index=f"{es_prefix}*").body)
    assert "az-small" in node_side

    secrets = {"Azure key": FAKE_AZURE_KEY, "Azure key (pasted form)":
               FAKE_AZURE_KEY.replace("-", ""), "ES password": es_password,
               "wrong ES password": wrong_es_password}
    haystacks: list[tuple[str, bytes]] = []
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path != pasted:  # the one input that holds a key, on purpose
            haystacks.extend(_texts_of(path))
    assert any(name.endswith("vectors.sqlite") for name, _ in haystacks)  # the cache is there
    assert any(name.endswith("meta.json") for name, _ in haystacks)
    assert any("xl/worksheets" in name for name, _ in haystacks)
    for i, proc in enumerate(outputs):
        haystacks.append((f"output of call {i}", (proc.stdout + proc.stderr).encode()))
    haystacks.append(("log records", caplog.text.encode()))
    haystacks.append(("index metadata on the node", node_side.encode()))
    leaks = [(what, where) for what, secret in secrets.items() for form in _forms(secret)
             for where, data in haystacks if form in data]
    assert leaks == []
    # and the tests really did hand both secrets over
    assert azure_api.requests[0].headers["api-key"] == FAKE_AZURE_KEY
    meta = json.loads(next(out.rglob("meta.json")).read_text(encoding="utf-8"))
    assert meta["elasticsearch"]["url"] == es_node.url
