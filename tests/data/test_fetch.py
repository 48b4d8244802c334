"""`data fetch` against a loopback mirror of the shared data (never the real GitHub)."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedarena.data.datasets import DATASETS, load_dataset
from embedarena.data.fetch import FetchError, fetch, sha256_file
from embedarena.errors import DataError


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Mirror:
    """A loopback HTTP server over a folder; counts the GET requests it answered."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(shared_data: Path) -> Iterator[Mirror]:
    with Mirror(shared_data) as m:
        yield m


def test_fetch_downloads_verifies_and_skips_current_files(mirror: Mirror, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("EMBEDARENA_DATA_MIRROR", mirror.url)
    res = fetch("cranfield", dest=tmp_path, progress=False)
    spec = DATASETS["cranfield"]
    assert sorted(res.downloaded) == sorted(rf.path for rf in spec.files)
    assert res.present == []
    assert res.bytes_downloaded == sum(rf.size for rf in spec.files)
    for rf in spec.files:
        assert sha256_file(tmp_path / "cranfield" / rf.path) == rf.sha256
    assert not list((tmp_path / "cranfield").glob(".*"))  # no temp files left behind
    # the fetched copy loads like the shared one
    corpus, sets = load_dataset("cranfield", tmp_path)
    assert (len(corpus), len(sets["test"])) == (1400, 225)

    n_requests = len(mirror.requests)
    again = fetch("cranfield", dest=tmp_path, progress=False)
    assert again.downloaded == [] and len(again.present) == len(spec.files)
    assert len(mirror.requests) == n_requests  # nothing was asked for


def test_fetch_replaces_a_damaged_local_file(mirror: Mirror, tmp_path: Path) -> None:
    fetch("dbpedia", dest=tmp_path, mirror=mirror.url, progress=False)
    damaged = tmp_path / "dbpedia" / "qrels" / "test.tsv"
    damaged.write_text("oops", encoding="utf-8")
    res = fetch("dbpedia", dest=tmp_path, mirror=mirror.url, progress=False)
    assert res.downloaded == ["qrels/test.tsv"]
    assert sha256_file(damaged) == DATASETS["dbpedia"].files[2].sha256


def test_corrupted_download_is_a_checksum_error(shared_data: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(shared_data / "cranfield", served / "cranfield")
    with (served / "cranfield" / "cran.qry").open("ab") as f:
        f.write(b"tampered\n")
    dest = tmp_path / "dest"
    with Mirror(served) as m, pytest.raises(FetchError) as e:
        fetch("cranfield", dest=dest, mirror=m.url, progress=False)
    msg = str(e.value)
    assert isinstance(e.value, DataError)
    assert "cran.qry" in msg and "checksum mismatch" in msg
    assert not (dest / "cranfield" / "cran.qry").exists()
    assert not [p for p in (dest / "cranfield").iterdir() if p.name.startswith(".")]


def test_missing_file_on_mirror_names_it(tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    with Mirror(tmp_path / "served") as m, pytest.raises(FetchError) as e:
        fetch("flagembedding-toy", dest=tmp_path / "d", mirror=m.url, progress=False)
    assert "HTTP 404" in str(e.value) and "toy_finetune_data.jsonl" in str(e.value)


def test_unreachable_mirror_is_one_clean_error(tmp_path: Path) -> None:
    with Mirror(tmp_path) as m:
        url = m.url
    with pytest.raises(FetchError, match="download failed"):
        fetch("cranfield", dest=tmp_path / "d", mirror=url, progress=False, timeout=5)


def test_cli_fetch(mirror: Mirror, tmp_path: Path) -> None:
    from embedarena.cli import app

    runner = CliRunner()
    args = ["data", "fetch", "flagembedding-toy", "--mirror", mirror.url, "--dest",
            str(tmp_path), "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "downloaded 7 file(s)" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "downloaded 0 file(s) (0 bytes), 7 already present" in second.output
