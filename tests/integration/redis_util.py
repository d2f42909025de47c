"""redis_util.py: a private redis-server for the cluster tests (Debian's
redis-server, started by the test itself). Redis needs an explicit port:
one is picked free on loopback (and another tried if it was taken by the
time redis binds it). No persistence unless asked (then an AOF fsync'ed before each reply by
default); its files live in a
temporary directory removed at stop(). redis-cli does the inspection."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, appendonly=False, appendfsync="always", extra_args=(), password=None):
        self.password = password  # requirepass (the default user's); cli() sends it
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-redis-")
        self.extra_args = list(extra_args)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = None
        self.proc = None
        # A setUp/setUpClass that fails after start() never calls stop():
        # the test process's exit must not leave a redis-server behind.
        atexit.register(self.kill)

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, port=None):
        """Starts redis (on `port`, e.g. the same one again after stop())
        and waits until it answers PING."""
        for _ in range(5):
            self.port = port or free_port()
            self.proc = subprocess.Popen(
                [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                 "--appendfsync", self.appendfsync,
                 "--dir", self.tmp, "--daemonize", "no", "--loglevel", "warning"]
                + (["--requirepass", self.password] if self.password else [])
                + self.extra_args,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self.cli("PING") == "PONG":
                        return self
                except subprocess.CalledProcessError:
                    pass
                time.sleep(0.02)
            self.kill()
            if port is not None:
                break
        raise AssertionError("redis-server did not start (port %s)" % self.port)

    def cli(self, *args):
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # not on the command line
        out = subprocess.run([REDIS_CLI, "-p", str(self.port), "--raw"] + list(args),
                             check=True, capture_output=True, timeout=10, env=env)
        return out.stdout.decode("utf-8", "replace").rstrip("\n")

    def pause(self):
        """SIGSTOP: Redis alive, its sockets open, answering nothing."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
