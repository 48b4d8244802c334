"""A loopback TCP forwarder run as its own process: `python tcp_proxy.py TARGET_PORT`.

Tests point the CLI at it and SIGKILL it mid-build: to the client that is a node dying (every
connection drops, new ones are refused), while the real node stays up for the other tests.
Prints the port it listens on, then serves until killed.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def main() -> None:
    target = ("127.0.0.1", int(sys.argv[1]))
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
