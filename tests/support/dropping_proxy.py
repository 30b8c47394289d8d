"""A TCP proxy on loopback that loses answers: the first ``drop`` connections carry the
request to the API whole, and when the API starts answering, the client's connection is
closed without a byte of it. The API did the work; the client never heard. Later
connections pass through both ways."""
from __future__ import annotations

import socket
import threading


class DroppingProxy:
    def __init__(self, upstream_port: int, drop: int = 1) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.dropped = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                dropping = self.drop > 0
                self.drop -= dropping
            threading.Thread(target=self._serve, args=(conn, dropping), daemon=True).start()

    def _serve(self, client: socket.socket, dropping: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        if dropping:
            upstream.recv(1)  # the API answers: the request was received and acted on
            with self._lock:
                self.dropped += 1
            # shutdown, not only close: the pipe thread is blocked reading the client
            # socket, and a plain close() waits for that read before the FIN goes out,
            # so the client would see the drop only at its own read timeout (60 s)
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            return
        _pipe(upstream, client)

    def close(self) -> None:
        self.server.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
