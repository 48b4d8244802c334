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
    ManagedNode,
    free_port,
    java_range,
    render_config,
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
    node = ManagedNode(f"life-{uuid.uuid4().hex[:6]}", home=home)
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
