"""A TLS-terminating TCP proxy on 127.0.0.1, for putting a real plain-HTTP server (the ZenML
server) behind a certificate the tests control.

Bytes are copied unchanged both ways; only the transport is TLS. The listening port is the
kernel's pick (port 0), and `stop()` closes everything this proxy opened.
"""

from __future__ import annotations

import socket
import ssl
import threading
from contextlib import suppress


class TlsProxy:
    def __init__(self, backend: tuple[str, int], certfile: str, keyfile: str) -> None:
        self._backend = backend
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certfile, keyfile)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.handshakes_failed = 0  # clients that refused the certificate (or spoke no TLS)
        threading.Thread(target=self._accept, name="tls-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._stopping.set()
        with suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.handshakes_failed += 1
            client.close()
            return
        backend = socket.create_connection(self._backend)
        with self._lock:
            self._sockets += [secure, backend]
        threading.Thread(target=_pump, args=(backend, secure), daemon=True).start()
        _pump(secure, backend)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
