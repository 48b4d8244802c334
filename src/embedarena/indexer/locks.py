"""Coordination between builders of one alias, kept on the node itself (no extra service).

Two kinds of small documents live in one index, `embedarena-_locks` (a name no alias can take:
`index_slug` never starts a slug with `_`):

- `alias:<alias>`, the **alias lock**, created with `op_type=create` (so exactly one builder
  gets it) and held only around the alias swap and the deletes that go with it;
- `build:<index>`, a **build claim**, written before a builder creates its physical index and
  refreshed by a heartbeat thread until the index is attached or removed. An index that no
  alias points at and that no live claim covers is an orphan (a build killed with `kill -9`,
  or whose node died), and is pruned.

A document is stale when its heartbeat is older than its time-to-live, or at once when it was
written on this host by a process that no longer exists. A stale lock is taken over with a
compare-and-swap delete (`if_seq_no`/`if_primary_term`), so two waiters cannot both take it.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from embedarena.errors import SearchBackendError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

LOCK_INDEX = "embedarena-_locks"
#: An alias lock older than this is stale: a swap takes well under a second.
LOCK_TTL_S = 60.0
#: How long a builder waits for another one's swap before it gives up.
LOCK_WAIT_S = 120.0
#: A build claim is refreshed this often, and is stale after CLAIM_TTL_S without a refresh.
HEARTBEAT_S = 15.0
CLAIM_TTL_S = 120.0

_HOST = socket.gethostname()


def _stamp(**extra: Any) -> dict[str, Any]:
    return {"host": _HOST, "pid": os.getpid(), "at": time.time(), **extra}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def is_stale(doc: dict[str, Any], ttl_s: float, now: float | None = None) -> bool:
    """Whether a lock or claim document no longer stands for a live process."""
    at = float(doc.get("at") or 0.0)
    if (now if now is not None else time.time()) - at > ttl_s:
        return True
    pid = doc.get("pid")
    return doc.get("host") == _HOST and isinstance(pid, int) and not _pid_alive(pid)


def ensure_lock_index(client: Elasticsearch) -> None:
    """Create the lock index once (a concurrent creator winning the race is fine)."""
    from elasticsearch import BadRequestError

    if client.indices.exists(index=LOCK_INDEX):
        return
    try:
        client.indices.create(
            index=LOCK_INDEX,
            settings={"number_of_shards": 1, "number_of_replicas": 0, "auto_expand_replicas":
                      "0-1"},
            mappings={"dynamic": "false", "properties": {"alias": {"type": "keyword"}}})
    except BadRequestError as e:
        if getattr(e, "error", "") != "resource_already_exists_exception":
            raise


@contextlib.contextmanager
def alias_lock(client: Elasticsearch, alias: str, *, wait_s: float = LOCK_WAIT_S,
               ttl_s: float = LOCK_TTL_S) -> Iterator[None]:
    """Hold the alias lock for the body; waits while another live builder holds it."""
    from elasticsearch import ConflictError, NotFoundError

    ensure_lock_index(client)
    doc_id = f"alias:{alias}"
    mine = _stamp(alias=alias, token=uuid.uuid4().hex)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            r = client.index(index=LOCK_INDEX, id=doc_id, document=mine, op_type="create")
            held = (int(r["_seq_no"]), int(r["_primary_term"]))
            break
        except ConflictError:
            pass
        try:
            cur = client.get(index=LOCK_INDEX, id=doc_id)
        except NotFoundError:
            continue  # released between our create and our get
        src = cur["_source"]
        if is_stale(src, ttl_s):
            with contextlib.suppress(ConflictError, NotFoundError):
                client.delete(index=LOCK_INDEX, id=doc_id, if_seq_no=cur["_seq_no"],
                              if_primary_term=cur["_primary_term"])
            continue
        if time.monotonic() > deadline:
            raise SearchBackendError(
                f"alias {alias} is locked by pid {src.get('pid')} on {src.get('host')} for "
                f"more than {wait_s:.0f} s; if no build is running there, delete the document "
                f"'{doc_id}' from index {LOCK_INDEX} (it also expires after {ttl_s:.0f} s)")
        time.sleep(0.02 + random.random() * 0.08)
    try:
        yield
    finally:
        _release(client, doc_id, held)


def _release(client: Elasticsearch, doc_id: str, held: tuple[int, int]) -> None:
    """Delete our own lock document only (a takeover changed its seq_no); never raises: an
    unreachable node leaves a lock that goes stale by itself."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    with contextlib.suppress(ApiError, TransportError):
        client.delete(index=LOCK_INDEX, id=doc_id, if_seq_no=held[0], if_primary_term=held[1])


class BuildClaim:
    """`build:<index>` on the node while a builder owns that (not yet attached) index.

    Written before the index exists and refreshed from a daemon thread; `release()` deletes it
    and never raises. Use as a context manager around the life of the partial index.
    """

    def __init__(self, client: Elasticsearch, alias: str, index: str,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.client = client
        self.doc_id = f"build:{index}"
        self.alias = alias
        self.index = index
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.client.index(index=LOCK_INDEX, id=self.doc_id,
                          document=_stamp(alias=self.alias, index=self.index))

    def __enter__(self) -> BuildClaim:
        self.acquire()
        return self

    def acquire(self) -> None:
        ensure_lock_index(self.client)
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"claim {self.index}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        from elastic_transport import TransportError
        from elasticsearch import ApiError

        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(ApiError, TransportError):
                self._write()

    def release(self) -> None:
        from elastic_transport import TransportError
        from elasticsearch import ApiError

        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with contextlib.suppress(ApiError, TransportError):
            self.client.delete(index=LOCK_INDEX, id=self.doc_id)

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_claims(client: Elasticsearch, indexes: Iterable[str],
                ttl_s: float = CLAIM_TTL_S) -> dict[str, dict[str, Any]]:
    """The indexes among `indexes` that a live builder still owns, with its claim."""
    names = list(indexes)
    if not names or not client.indices.exists(index=LOCK_INDEX):
        return {}
    docs = client.mget(index=LOCK_INDEX, ids=[f"build:{n}" for n in names])["docs"]
    out = {}
    for name, d in zip(names, docs):
        if d.get("found") and not is_stale(d["_source"], ttl_s):
            out[name] = d["_source"]
    return out



def forget_claim(client: Elasticsearch, index: str) -> None:
    """Drop the (stale) claim of an index that is gone."""
    from elasticsearch import NotFoundError

    with contextlib.suppress(NotFoundError):
        client.delete(index=LOCK_INDEX, id=f"build:{index}")
