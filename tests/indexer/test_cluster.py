"""A real local 3-node cluster (`embedarena es start --nodes 3`): its configuration and TLS
material, then builds and evals over Cranfield with BM25 while a node is killed.

The cluster tests start their own three nodes on free loopback ports in a private home (the
unpacked distribution is shared by a symlink), and stop and purge them at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import embedarena as ea
from embedarena.errors import SearchBackendError
from embedarena.indexer.cluster import TRANSPORT_OFFSET, ManagedCluster
from embedarena.indexer.node import ClusterMember, ManagedNode, _port_in_use, render_config
from embedarena.progress import RecordedTask, RecordingProgress

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_member_config_has_its_ports_seeds_and_transport_tls(tmp_path: Path) -> None:
    member = ClusterMember("c3", 9500, ["127.0.0.1:9500", "127.0.0.1:9501"], ["c3-1", "c3-2"],
                           [])
    cfg = render_config("c3", "c3-1", 9400, tmp_path / "d", tmp_path / "l", member=member)
    lines = dict(ln.split(": ", 1) for ln in cfg.splitlines() if ": " in ln and ln[0] != "#")
    assert "discovery.type" not in lines
    assert lines["transport.port"] == "9500"
    assert lines["discovery.seed_hosts"] == '["127.0.0.1:9500", "127.0.0.1:9501"]'
    assert lines["cluster.initial_master_nodes"] == '["c3-1", "c3-2"]'
    assert lines["xpack.security.transport.ssl.enabled"] == "true"
    assert lines["xpack.security.transport.ssl.verification_mode"] == "full"
    assert lines["network.host"] == "127.0.0.1"


def test_members_share_one_password_and_get_consecutive_ports(tmp_path: Path) -> None:
    c = ManagedCluster("c3", 3, home=tmp_path, port=9400)
    ms = c.members()
    assert [m.name for m in ms] == ["c3-1", "c3-2", "c3-3"]
    assert {m.password_file for m in ms} == {tmp_path.resolve() / "secrets/c3.elastic.password"}
    assert [m.member.transport_port for m in ms if m.member] == [9500, 9501, 9502]
    assert c.urls() == [f"http://127.0.0.1:{p}" for p in (9400, 9401, 9402)]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_material_is_0600_and_the_node_cert_is_signed_by_the_ca(tmp_path: Path) -> None:
    c = ManagedCluster("c3", 3, home=tmp_path)
    c._ensure_tls(None)
    files = sorted(p.name for p in c.tls_dir.iterdir())
    assert {"ca.crt", "ca.key", "node.crt", "node.key"} <= set(files)
    for p in c.tls_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(c.tls_dir.stat().st_mode) == 0o700
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(c.tls_dir / "ca.crt"),
                         str(c.tls_dir / "node.crt")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           str(c.tls_dir / "node.crt")], capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in text
    before = (c.tls_dir / "ca.key").read_bytes()
    c._ensure_tls(None)  # generated once
    assert (c.tls_dir / "ca.key").read_bytes() == before


def test_index_loads_without_replicas_and_waits_for_the_health_it_can_reach() -> None:
    from embedarena.arena import index_options
    from embedarena.experiment import IndexConfig
    from embedarena.indexer.build import IndexOptions, index_settings, wait_status

    opts = index_options(IndexConfig(shards=3, replicas=1))
    assert (opts.shards, opts.replicas) == (3, 1)
    assert index_settings(opts) == {"number_of_shards": 3, "number_of_replicas": 0,
                                    "refresh_interval": "-1"}
    assert wait_status(opts, 3) == "green" and wait_status(opts, 2) == "green"
    assert wait_status(opts, 1) == "yellow"  # a replica never shares its primary's node
    assert wait_status(IndexOptions(), 1) == "green"
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        IndexConfig(shards=0)


# -- a real 3-node cluster -------------------------------------------------------------------
def _free_base() -> int:
    for _ in range(200):
        base = random.randrange(20000, 40000)
        ports = [base + i for i in range(3)] + [base + TRANSPORT_OFFSET + i for i in range(3)]
        if not any(_port_in_use(p) for p in ports):
            return base
    raise RuntimeError("no free block of loopback ports")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ManagedCluster]:
    from embedarena.errors import NodeError

    home = Path(tempfile.mkdtemp(prefix="ea-cluster-"))
    os.chmod(home, 0o755)  # as root, ES runs as an unprivileged user who must enter it
    shared = ManagedNode("x").es_home
    if (shared / "bin" / "elasticsearch").exists():
        (home / "dist").mkdir()
        (home / "dist" / shared.name).symlink_to(shared)
    c = ManagedCluster("c3", 3, home=home, port=_free_base())
    t0 = time.monotonic()
    try:
        c.start(heap="512m", timeout=300)
    except NodeError as e:
        c.stop(purge=True)
        shutil.rmtree(home, ignore_errors=True)
        if IN_CI:
            pytest.fail(f"no 3-node cluster: {e}")
        pytest.skip(f"no 3-node cluster: {e}")
    print(f"3-node cluster started in {time.monotonic() - t0:.1f} s")
    try:
        yield c
    finally:
        c.stop(purge=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def on_cluster(cluster: ManagedCluster, tmp_path: Path, shared_data: Path,
               monkeypatch: pytest.MonkeyPatch) -> ManagedCluster:
    monkeypatch.setenv("EMBEDARENA_ES_URL", cluster.url)  # member 1, never the one killed
    monkeypatch.setenv("EMBEDARENA_ES_USERNAME", "elastic")
    monkeypatch.setenv("EMBEDARENA_ES_PASSWORD_FILE", str(cluster.password_file))
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(shared_data))
    return cluster


def _client(c: ManagedCluster) -> Any:
    from elasticsearch import Elasticsearch

    return Elasticsearch(c.url, basic_auth=("elastic", c.password()), request_timeout=60)


def _experiment(tmp_path: Path, out: str = "out", **index: Any) -> ea.Experiment:
    return ea.Experiment(
        name="cluster", corpus={"dataset": "cranfield"},
        queries=[{"dataset": "cranfield", "name": "cranfield"}], metrics=["hit@5", "ndcg@10"],
        index={"prefix": "c3-", **index}, models=["bm25"], out=tmp_path / out)


class _KillOnSearch(RecordingProgress):
    """Kills one node (by the pid of the process the cluster started) at the first search
    batch, so the rest of the eval runs with that node gone."""

    def __init__(self, kill: Callable[[], None]) -> None:
        super().__init__()
        self.kill = kill
        self.killed = False

    def task(self, description: str, total: int | None = None, *,
             completed: int = 0) -> Any:
        t = super().task(description, total, completed=completed)
        if description.startswith("search "):
            outer = self

            class _T(RecordedTask):
                def advance(self, n: int = 1) -> None:
                    super().advance(n)
                    if not outer.killed:
                        outer.killed = True
                        outer.kill()

            assert isinstance(t, RecordedTask)
            t2 = _T(t.description, t.total, t.completed)
            self.tasks[-1] = t2
            return t2
        return t


@pytest.mark.es
@pytest.mark.slow
@pytest.mark.cluster
def test_status_shows_every_node_and_green_health(on_cluster: ManagedCluster,
                                                   cli: Callable[..., Any]) -> None:
    res = cli("es", "status", "--name", "c3",
              env={"EMBEDARENA_ES_URL": None, "EMBEDARENA_HOME": str(on_cluster.home)})
    assert res.code == 0, res.stdout + res.stderr
    for m in on_cluster.members():
        assert f"{m.name}: running" in res.stdout
    assert "health: green; nodes 3" in res.stdout


@pytest.mark.es
@pytest.mark.slow
@pytest.mark.cluster
def test_build_3_shards_1_replica_then_eval_and_build_with_a_node_killed(
        on_cluster: ManagedCluster, tmp_path: Path) -> None:
    client = _client(on_cluster)
    t0 = time.monotonic()
    first = ea.run_experiment(_experiment(tmp_path, shards=3, replicas=1), search=False)
    assert first.built == ["bm25"]
    alias = "c3-bm25"
    (index,) = client.indices.get_alias(name=alias).body
    assert client.count(index=alias)["count"] == 1400
    s = client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert (s["number_of_shards"], s["number_of_replicas"], s["refresh_interval"]) == \
        ("3", "1", "1s")
    assert client.cluster.health(index=index)["status"] == "green"
    # every primary has its replica on another node
    shards = client.cat.shards(index=index, format="json").body
    assert len(shards) == 6 and {r["state"] for r in shards} == {"STARTED"}
    for n in range(3):
        nodes = {r["node"] for r in shards if r["shard"] == str(n)}
        assert len(nodes) == 2
    print(f"build 3x1: {time.monotonic() - t0:.1f} s")
    # and one without replicas: one primary per node, so the kill below takes one for good
    ea.run_experiment(_experiment(tmp_path, "out-r0", prefix="c3r0-", shards=3), search=False)
    r0_shards = client.cat.shards(index="c3r0-bm25", format="json").body
    assert {r["node"] for r in r0_shards} == {m.name for m in on_cluster.members()}

    # kill member 3 (never the node the client talks to) at the first search batch
    victim = on_cluster.members()[2]
    pid = victim.pid()
    assert pid is not None
    progress = _KillOnSearch(lambda: os.kill(pid, signal.SIGKILL))
    out = tmp_path / "out" / "cranfield" / "bm25"
    t0 = time.monotonic()
    try:
        result = ea.run_experiment(_experiment(tmp_path, shards=3, replicas=1, msearch_batch=16),
                                   progress=progress)
    except SearchBackendError as e:
        # the other accepted outcome: a clear message, and no metrics over fewer queries
        print(f"eval with a node killed failed: {e}")
        assert "answered by only" in str(e) or "node" in str(e).lower(), e
        assert not (out / "metrics.json").exists()
    else:
        print("eval with a node killed: every query answered")
        assert progress.killed
        assert result.reused == ["bm25"]
        rows = (out / "run.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rows) == 225  # every query answered, from the replicas
        assert json.loads((out / "metrics.json").read_text())
        assert result.query_counts["cranfield"] == 225
    print(f"eval with a node killed: {time.monotonic() - t0:.1f} s")
    deadline = time.monotonic() + 60
    while victim.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert victim.pid() is None
    h = client.options(request_timeout=130).cluster.health(
        index=alias, wait_for_status="yellow", wait_for_nodes="2", timeout="120s")
    assert not h["timed_out"], h

    # without replicas a third of the shards is gone: refused in one line, no metrics written
    with pytest.raises(SearchBackendError,
                       match=r"answered by only 2 of 3 shards.*replicas") as refused:
        ea.run_experiment(_experiment(tmp_path, "out-r0", prefix="c3r0-", shards=3))
    print(f"without replicas: {refused.value}")
    assert not (tmp_path / "out-r0" / "cranfield" / "bm25" / "metrics.json").exists()

    # a build while the node is down: 2 data nodes still hold a primary and a replica each
    t0 = time.monotonic()
    try:
        again = ea.run_experiment(_experiment(tmp_path, shards=3, replicas=1), search=False,
                                  force=True)
    except SearchBackendError:
        (still,) = client.indices.get_alias(name=alias).body
        assert still == index and client.count(index=alias)["count"] == 1400
    else:
        assert again.built == ["bm25"]
        (new,) = client.indices.get_alias(name=alias).body
        assert new != index
        assert client.count(index=alias)["count"] == 1400
        assert client.cluster.health(index=new)["status"] == "green"
    print(f"build with a node down: {time.monotonic() - t0:.1f} s")
