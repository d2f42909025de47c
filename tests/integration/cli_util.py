"""What the tests of the programs that talk to cryomambad share
(test_cli.py, test_cli_upload.py, test_viewer.py): where the CLI is, a free
port, a file's sha256, a TCP proxy's listening half and the wait for a
background process's next matching line. The server itself is harness.py's."""

import hashlib
import os
import queue
import socket
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "..", "build")
CLI_BIN = os.path.abspath(os.environ.get(
    "CRYOMAMBA_CLI_BIN", os.path.join(BUILD, "src", "cli", "cryomamba")))


def require_cli():
    """Fails the test class at once when the CLI was not built."""
    if not os.path.isfile(CLI_BIN):
        raise RuntimeError("cli binary not found: %s (set CRYOMAMBA_CLI_BIN)" % CLI_BIN)


def free_port():
    """A port nothing listens on now (for a server restarted on the same one)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wait_item(q, pred, timeout, on_timeout, on_end):
    """The first item taken from `q` for which pred(item) is true. None in
    the queue means its producer ended: AssertionError(on_end()); nothing
    matching within `timeout` s: AssertionError(on_timeout())."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(on_timeout())
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            continue
        if item is None:
            raise AssertionError(on_end())
        if pred(item):
            return item


class TcpProxy:
    """The listening half of a proxy on 127.0.0.1 (a free port): each
    accepted connection goes to self._serve(conn) on a thread of its own,
    which subclasses define; close() stops accepting."""

    def __init__(self, upstream, backlog=64):
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def connect_upstream(self):
        """A blocking connection to the upstream, or None if it refuses."""
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        except OSError:
            return None
        u.settimeout(None)
        return u

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        raise NotImplementedError
