"""`embedarena data fetch`: download a named dataset's public files from their original sources.

Each file comes from a pinned commit of its public GitHub repository and must match the sha256
pinned in `datasets.DATASETS`; it is written to a temp file beside its destination and renamed
only when the hash matches, so an interrupted or tampered download never looks complete. A file
already present with the right hash is not downloaded again.

A mirror (`--mirror URL` or $EMBEDARENA_DATA_MIRROR) replaces the sources: it must serve the
shared-data layout, `<mirror>/<dataset folder>/<file path>` (e.g. `python -m http.server` run in
shared/data).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embedarena import paths
from embedarena.data.datasets import DatasetSpec, RemoteFile, get_spec
from embedarena.errors import DataError
from embedarena.progress import NULL, current

if TYPE_CHECKING:
    import httpx

ENV_MIRROR = "EMBEDARENA_DATA_MIRROR"
CHUNK = 1 << 16
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0


class FetchError(DataError):
    """A download failed or did not match its pinned checksum; names the file."""


@dataclass
class FetchResult:
    name: str
    folder: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def source_url(spec: DatasetSpec, rf: RemoteFile, mirror: str | None) -> str:
    """The original URL, or the file's place on the mirror (shared-data layout)."""
    if not mirror:
        return rf.url
    return f"{mirror.rstrip('/')}/{spec.folder}/{rf.path}"


def is_current(path: Path, rf: RemoteFile) -> bool:
    """True when `path` already holds exactly the pinned file (size first: cheap)."""
    return path.is_file() and path.stat().st_size == rf.size and sha256_file(path) == rf.sha256


def fetch(name: str, *, dest: str | Path | None = None, mirror: str | None = None,
          progress: bool = True, timeout: float = READ_TIMEOUT_S) -> FetchResult:
    """Download dataset `name` into `<dest>/<name>/` (default: the datasets cache), verifying
    each file's sha256; files already there with the right hash are left alone."""
    import httpx

    spec = get_spec(name)
    mirror = mirror if mirror is not None else os.environ.get(ENV_MIRROR) or None
    base = Path(dest) if dest is not None else paths.cache_dir("datasets")
    folder = base / spec.name
    result = FetchResult(spec.name, folder)
    todo: list[RemoteFile] = []
    for rf in spec.files:
        if is_current(folder / rf.path, rf):
            result.present.append(rf.path)
        else:
            todo.append(rf)
    if not todo:
        return result
    limits = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S)
    reporter = current() if progress else NULL
    with reporter.task(f"fetch {spec.name} (bytes)", total=sum(rf.size for rf in todo)) as task, \
            httpx.Client(timeout=limits, follow_redirects=True) as client:
        for rf in todo:
            url = source_url(spec, rf, mirror)
            task.update(description=f"{spec.name}/{rf.path} (bytes)")
            n = _download(client, url, folder / rf.path, rf, task.advance)
            result.downloaded.append(rf.path)
            result.bytes_downloaded += n
        task.close(f"{spec.name}: {len(todo)} file(s) verified")
    return result


def _download(client: httpx.Client, url: str, target: Path, rf: RemoteFile,
              advance: Callable[[int], None]) -> int:
    """Stream `url` into a temp file beside `target`, hash it, rename only when it matches."""
    import httpx

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
    except OSError as e:
        raise FetchError(target, f"cannot write here: {e}") from None
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise FetchError(target, f"download failed: HTTP {resp.status_code} "
                                                 f"from {url}")
                    for chunk in resp.iter_bytes(CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                        advance(len(chunk))
            except httpx.HTTPError as e:
                raise FetchError(target, f"download failed from {url}: "
                                         f"{type(e).__name__}: {e}") from None
        digest = h.hexdigest()
        if digest != rf.sha256:
            raise FetchError(target, f"checksum mismatch for {rf.path}: expected sha256 "
                                     f"{rf.sha256}, got {digest} ({size} bytes from {url}); "
                                     "the file was not kept")
        os.replace(tmp, target)
    except OSError as e:
        raise FetchError(target, f"cannot write the download: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return size
