"""The managed node: pure config, checksum and JDK checks, and the real lifecycle."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from embedarena import paths
from embedarena.errors import NodeError
from embedarena.indexer.node import (
    DEFAULT_VERSION,
    KNOWN_SHA256,
    LATEST_9,
    ManagedNode,
    free_port,
    java_range,
    render_config,
    resolve_version,
)


def test_config_binds_loopback_with_security_on(tmp_path: Path) -> None:
    cfg = render_config("c", "n", 9333, tmp_path / "data", tmp_path / "logs")
    lines = dict(ln.split(": ", 1) for ln in cfg.splitlines() if ": " in ln and ln[0] != "#")
    assert lines["network.host"] == "127.0.0.1"
    assert lines["http.port"] == "9333"
    assert lines["xpack.security.enabled"] == "true"
    assert lines["discovery.type"] == "single-node"
    assert lines["path.data"] == str(tmp_path / "data")


def test_java_range_by_major() -> None:
    assert java_range("8.19.21") == (17, 25)
    assert java_range("9.1.0")[0] == 21


def test_find_java_picks_a_supported_jdk() -> None:
    home, major = ManagedNode("x", home=Path("/nonexistent")).find_java()
    lo, hi = java_range(DEFAULT_VERSION)
    assert lo <= major <= hi
    assert (home / "bin" / "java").exists()


def test_bad_es_java_home_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("ES_JAVA_HOME", str(tmp_path))
    with pytest.raises(NodeError, match="is not a JDK"):
        ManagedNode("x", home=tmp_path).find_java()


def test_corrupt_distribution_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / f"elasticsearch-{DEFAULT_VERSION}.zip"
    fake.write_bytes(b"PK\x03\x04 not really elasticsearch")
    node = ManagedNode("x", home=tmp_path / "home")
    with pytest.raises(NodeError, match="sha256"):
        node.obtain(distribution=fake)
    assert not node.es_home.exists()


def test_two_nodes_obtaining_at_once_share_one_unpack(tmp_path: Path) -> None:
    """Two `es start` at the same moment (CI and a helper, two terminals) must both succeed:
    the second waits for the first's unpack instead of failing on the rename."""
    from concurrent.futures import ThreadPoolExecutor

    zip_path = ManagedNode("x")._maven_fetch(None)  # the cached Maven Central zip
    node_a = ManagedNode("a", home=tmp_path / "home")
    node_b = ManagedNode("b", home=tmp_path / "home")
    with ThreadPoolExecutor(2) as pool:
        homes = list(pool.map(lambda n: n.obtain(distribution=zip_path), [node_a, node_b]))
    assert homes[0] == homes[1] == node_a.es_home
    assert (node_a.es_home / "bin" / "elasticsearch").is_file()
    assert not [p for p in node_a.dist_root.iterdir() if p.name.startswith(".unpack-")]


def test_maven_sha1_mismatch_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / f"elasticsearch-{DEFAULT_VERSION}.zip"
    fake.write_bytes(b"garbage")
    (tmp_path / (fake.name + ".sha1")).write_text("0" * 40)
    with pytest.raises(NodeError, match="sha1"):
        ManagedNode("x", home=tmp_path / "home").obtain(distribution=fake)


def test_9x_is_pinned_and_fetched_from_maven_central_without_a_sha1() -> None:
    """Maven Central serves the 9.x zips with no .sha1 beside them: Maven's strict mode would
    refuse them, so a pinned version is fetched without it and checked against its sha256."""
    assert resolve_version("9") == LATEST_9 and LATEST_9.startswith("9.")
    assert resolve_version(None) == resolve_version("8") == DEFAULT_VERSION
    assert resolve_version("9.2.8") == "9.2.8"
    node = ManagedNode("x", version=LATEST_9)
    zip_path = node._maven_fetch(None)
    assert zip_path.name == f"elasticsearch-{LATEST_9}.zip" and len(KNOWN_SHA256[LATEST_9]) == 64
    node._verify(zip_path, None)  # the pinned sha256 matches what Maven Central serves


def test_only_an_unpinned_version_asks_maven_for_strict_checksums(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, args_file = tmp_path / "bin", tmp_path / "args"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text(f'#!/bin/sh\necho "$@" >> {args_file}\nexit 1\n')
    (bin_dir / "mvn").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MAVEN_REPO_LOCAL", str(tmp_path / "m2"))
    for version in (LATEST_9, "9.9.9"):
        with pytest.raises(NodeError, match="failed"):
            ManagedNode("x", home=tmp_path, version=version)._maven_fetch(None)
    pinned, unpinned = args_file.read_text().splitlines()
    assert "-C" not in pinned.split() and f":{LATEST_9}:zip" in pinned
    assert "-C" in unpinned.split()


def test_find_java_for_9x_needs_java_21() -> None:
    lo, hi = java_range(LATEST_9)
    assert lo == 21
    try:
        home, major = ManagedNode("x", home=Path("/nonexistent"), version=LATEST_9).find_java()
    except NodeError as e:  # a machine with only Java 17
        assert "needs a JDK 21" in str(e)
        return
    assert lo <= major <= hi and (home / "bin" / "java").exists()


def test_another_major_on_existing_data_is_refused(tmp_path: Path) -> None:
    """9.x would upgrade a node's 8.x data for good; 8.x cannot read 9.x data at all."""
    import json

    old = ManagedNode("n", home=tmp_path)
    old.data_dir.mkdir(parents=True)
    (old.data_dir / "nodes").mkdir()
    old.state_file.write_text(json.dumps({
        "version": DEFAULT_VERSION, "url": "http://127.0.0.1:1", "port": 1, "pid": None,
        "java_home": "/x", "java_major": 17, "run_as": None, "heap": "1g"}))
    with pytest.raises(NodeError, match=r"written by Elasticsearch 8\..*upgrade it for good.*"
                                        r"--name n-9 --version 9"):
        ManagedNode("n", home=tmp_path, version=LATEST_9).start(port=free_port())


def test_heap_is_validated(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="heap"):
        ManagedNode("x", home=tmp_path).start(port=free_port(), heap="lots")


def _node_home() -> Path:
    """Lifecycle nodes live under the real home so the unprivileged ES user can reach them."""
    base = paths.home() / "test-nodes"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    return base


@pytest.mark.es
@pytest.mark.slow
def test_lifecycle_start_index_restart_persist_stop(es_node) -> None:  # noqa: ANN001
    """start → healthy → index/search → start again is a no-op → restart → data kept → stop."""
    from elasticsearch import Elasticsearch

    home = _node_home()
    # share the unpacked distribution with the main home instead of unpacking it again
    dist = home / "dist"
    if not dist.exists():
        dist.symlink_to(paths.home() / "dist")
    # the version the es tests run against (EMBEDARENA_TEST_ES_VERSION=9: the 9.x lifecycle)
    node = ManagedNode(f"life-{uuid.uuid4().hex[:6]}", home=home,
                       version=resolve_version(os.environ.get("EMBEDARENA_TEST_ES_VERSION")))
    port = free_port()
    try:
        state, already = node.start(port=port, heap="512m")
        assert not already and state.url == f"http://127.0.0.1:{port}"
        assert oct(node.password_file.stat().st_mode & 0o777) == "0o600"
        es = Elasticsearch(state.url, basic_auth=("elastic", node.password()))
        es.index(index="life", id="1", document={"text": "甲状腺结节"}, refresh=True)
        hits = es.search(index="life", query={"match": {"text": "结节"}})["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["1"]

        again, already = node.start(port=port)
        assert already and again.pid == state.pid

        assert node.stop() is True
        assert node.status().running is False
        with pytest.raises(httpx.ConnectError):
            httpx.get(state.url, timeout=2)

        # a stale pid file (process gone) does not block the restart
        node.pid_file.write_text("999999")
        state2, already = node.start(port=port, heap="512m")
        assert not already
        es = Elasticsearch(state2.url, basic_auth=("elastic", node.password()))
        assert es.get(index="life", id="1")["_source"]["text"] == "甲状腺结节"

        # the generated password never reaches the node's logs
        pw = node.password()
        for f in node.logs_dir.iterdir():
            if f.is_file():
                assert pw not in f.read_text(errors="replace"), f
    finally:
        node.stop(purge=True)
    assert not node.dir.exists()
    assert not node.password_file.exists()


@pytest.mark.es
def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(NodeError, match=f"port {port} .* already in use"):
            ManagedNode("busy", home=tmp_path).start(port=port)


@pytest.mark.es
def test_anonymous_request_gets_401(es_node) -> None:  # noqa: ANN001
    r = httpx.get(f"{es_node.url}/_cluster/health", timeout=10)
    assert r.status_code == 401


@pytest.mark.es
def test_wrong_password_is_one_clear_line(cli, es_node, tmp_path: Path) -> None:  # noqa: ANN001
    """`embedarena es status` in process, through the real `main()`."""
    env = {"EMBEDARENA_ES_URL": es_node.url, "EMBEDARENA_ES_USERNAME": "elastic",
           "EMBEDARENA_ES_PASSWORD": "definitely-wrong-pw", "EMBEDARENA_ES_PASSWORD_FILE": None}
    proc = cli("es", "status", env=env, cwd=tmp_path)
    assert proc.code == 6
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "authentication failed" in err and es_node.url in err
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "definitely-wrong-pw" not in proc.stderr + proc.stdout


def test_node_password_file_follows_the_user_secret_rule(tmp_path: Path) -> None:
    """One rule for every secret file (issue 12, item 16): the managed node's own password at
    0644 is refused like a user's, with the chmod to run; at 0600 it is read."""
    from embedarena.errors import ConfigError

    node = ManagedNode("rule", home=tmp_path)
    node.password_file.parent.mkdir(parents=True)
    node.password_file.write_text("node-pw-123\n")
    os.chmod(node.password_file, 0o644)
    with pytest.raises(ConfigError, match=r"readable by group or others \(mode 0o644\); run: "
                                          r"chmod 600") as ei:
        node.password()
    assert "node-pw-123" not in str(ei.value)
    os.chmod(node.password_file, 0o600)
    assert node.password() == "node-pw-123"
    node.password_file.unlink()
    with pytest.raises(NodeError, match="has the node been started"):
        node.password()
