"""A local multi-node Elasticsearch cluster: N managed nodes of one distribution on 127.0.0.1.

Member i of cluster `<name>` is the managed node `<name>-<i>` (its own directory, data dir,
HTTP port `port + i - 1` and transport port `port + 100 + i - 1`). All members share one elastic
password (`secrets/<name>.elastic.password`, 0600) and talk over transport TLS with a CA and a
node certificate that `start` generates once with the `openssl` command line tool; the keys are
kept 0600 under `paths.home()/secrets/<name>-tls`. `clusters/<name>.json` records the members.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from embedarena import paths
from embedarena.errors import NodeError
from embedarena.indexer.node import (
    DEFAULT_VERSION,
    USER,
    ClusterMember,
    ManagedNode,
    NodeState,
    NodeStatus,
    ProgressFn,
)

DEFAULT_CLUSTER_HEAP = "512m"
TRANSPORT_OFFSET = 100


@dataclass
class ClusterState:
    name: str
    version: str
    size: int
    port: int
    heap: str


class ManagedCluster:
    """`size` managed nodes forming one cluster; see the module docstring for the layout."""

    def __init__(self, name: str, size: int = 3, home: Path | None = None,
                 version: str = DEFAULT_VERSION, port: int = 9200) -> None:
        if size < 2:
            raise NodeError(f"a cluster needs at least 2 nodes, got {size}")
        self.home = (home or paths.home()).resolve()
        self.name = name
        self.size = size
        self.version = version
        self.port = port
        self.state_file = self.home / "clusters" / f"{name}.json"
        self.password_file = self.home / "secrets" / f"{name}.elastic.password"
        self.tls_dir = self.home / "secrets" / f"{name}-tls"

    @classmethod
    def load(cls, name: str, home: Path | None = None) -> ManagedCluster | None:
        """The cluster `start` recorded under this name, or None."""
        f = (home or paths.home()).resolve() / "clusters" / f"{name}.json"
        if not f.is_file():
            return None
        st = ClusterState(**json.loads(f.read_text()))
        return cls(st.name, st.size, home=home, version=st.version, port=st.port)

    def member_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(1, self.size + 1)]

    def members(self) -> list[ManagedNode]:
        names = self.member_names()
        seeds = [f"127.0.0.1:{self.port + TRANSPORT_OFFSET + i}" for i in range(self.size)]
        tls = [self.tls_dir / f for f in ("ca.crt", "node.crt", "node.key")]
        return [
            ManagedNode(n, home=self.home, version=self.version,
                        password_file=self.password_file,
                        member=ClusterMember(cluster_name=self.name,
                                             transport_port=self.port + TRANSPORT_OFFSET + i,
                                             seed_hosts=seeds, initial_masters=names,
                                             tls_files=tls))
            for i, n in enumerate(names)
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.port + i}" for i in range(self.size)]

    def start(self, heap: str = DEFAULT_CLUSTER_HEAP, distribution: Path | None = None,
              timeout: float = 240.0,
              progress: ProgressFn | None = None) -> list[tuple[NodeState, bool]]:
        """Start every member at once (a master needs a quorum to be elected) and wait until
        all of them have joined and the cluster is at least yellow."""
        first = self.members()[0]
        first.obtain(distribution, progress)
        self._ensure_tls(progress)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(ClusterState(
            self.name, self.version, self.size, self.port, heap)), indent=2))
        if progress is not None:
            progress(f"starting {self.size} nodes of Elasticsearch {self.version}")
        with ThreadPoolExecutor(self.size) as pool:
            futures = [pool.submit(m.start, port=self.port + i, heap=heap,
                                   distribution=distribution, timeout=timeout)
                       for i, m in enumerate(self.members())]
            results = [f.result() for f in futures]
        self.wait_health("yellow", timeout=timeout, nodes=self.size)
        return results

    def stop(self, purge: bool = False) -> int:
        """Stop every member; returns how many processes were stopped."""
        with ThreadPoolExecutor(self.size) as pool:
            stopped = sum(pool.map(lambda m: m.stop(purge=purge), self.members()))
        if purge:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            self.password_file.unlink(missing_ok=True)
            self.state_file.unlink(missing_ok=True)
        return int(stopped)

    def status(self) -> list[tuple[ManagedNode, NodeStatus]]:
        return [(m, m.status()) for m in self.members()]

    def health(self) -> dict[str, object] | None:
        """`_cluster/health` from the first member that answers, or None."""
        for url in self.urls():
            try:
                r = httpx.get(f"{url}/_cluster/health", auth=(USER, self.password()),
                              timeout=5.0)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return dict(r.json())
        return None

    def wait_health(self, status: str, timeout: float, nodes: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        params = {"wait_for_status": status, "timeout": "5s"}
        if nodes is not None:
            params["wait_for_nodes"] = str(nodes)
        last = "no answer"
        while time.monotonic() < deadline:
            for url in self.urls():
                try:
                    r = httpx.get(f"{url}/_cluster/health", params=params,
                                  auth=(USER, self.password()), timeout=10.0)
                except httpx.HTTPError as e:
                    last = type(e).__name__
                    continue
                if r.status_code == 200 and not r.json().get("timed_out"):
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                break
            time.sleep(1.0)
        raise NodeError(f"cluster '{self.name}' did not reach {status}"
                        + (f" with {nodes} nodes" if nodes else "")
                        + f" in {timeout:.0f} s ({last})")

    def password(self) -> str:
        return self.members()[0].password()

    # -- transport TLS ---------------------------------------------------------------------
    def _ensure_tls(self, progress: ProgressFn | None) -> None:
        """A CA and one node certificate for 127.0.0.1/localhost (generated once, 0600)."""
        files = [self.tls_dir / f for f in ("ca.crt", "ca.key", "node.crt", "node.key")]
        if all(f.is_file() for f in files):
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise NodeError("transport TLS certificates are generated with the openssl command, "
                            "which is not installed (e.g. apt-get install openssl)")
        if progress is not None:
            progress(f"generating transport TLS certificates in {self.tls_dir}")
        self.tls_dir.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tls_dir.parent, 0o700)
        self.tls_dir.mkdir(mode=0o700, exist_ok=True)
        ca_crt, ca_key, crt, key = files
        with tempfile.TemporaryDirectory(dir=self.tls_dir) as tmp:
            csr = Path(tmp) / "node.csr"
            ext = Path(tmp) / "ext.cnf"
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth,clientAuth\n")
            cmds = [
                [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                 "-subj", f"/CN=embedarena {self.name} CA", "-keyout", str(ca_key),
                 "-out", str(ca_crt), "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                 f"/CN={self.name}", "-keyout", str(key), "-out", str(csr)],
                [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
                 str(ca_key), "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
                 "-out", str(crt)],
            ]
            old_umask = os.umask(0o077)
            try:
                for cmd in cmds:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                          cwd=tmp)
                    if proc.returncode != 0:
                        raise NodeError(f"openssl {cmd[1]} failed: {proc.stderr.strip()[-300:]}")
            finally:
                os.umask(old_umask)
        for f in self.tls_dir.iterdir():
            os.chmod(f, 0o600)
