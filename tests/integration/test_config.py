#!/usr/bin/python3
"""Server configuration (docs/protocol.md §7): flags and CRYOMAMBA_*
environment variables reach the behaviour and GET /v1/server/info; a flag
wins over the environment; bad flags fail fast with a non-zero status."""

import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVER_BIN, RawHTTP, Server, main  # noqa: E402


class ConfigTest(unittest.TestCase):
    def run_server(self, args=(), env=None):
        s = Server(args, env=env).start()
        self.addCleanup(s.cleanup)
        return s

    def stop(self, s):
        self.assertEqual(s.stop(), 0, s.stderr_tail())

    def test_flags(self):
        s = self.run_server(("--max-running", "3", "--preview-hz", "4",
                             "--max-connections", "77", "--max-subscribers-per-job", "9",
                             "--max-body-bytes", "4096", "--ws-ping-interval", "5",
                             "--ws-ping-timeout", "3"))
        lim = s.get("/v1/server/info").json["limits"]
        self.assertEqual(lim["max_running"], 3)
        self.assertEqual(lim["max_connections"], 77)
        self.assertEqual(lim["max_subscribers_per_job"], 9)
        self.assertEqual(lim["max_body_bytes"], 4096)
        job = s.create_job({})
        self.assertEqual(job["params"]["preview_hz"], 4.0)
        self.stop(s)

    def test_environment_and_precedence(self):
        env = {"CRYOMAMBA_MAX_RUNNING": "5", "CRYOMAMBA_PREVIEW_HZ": "2.5",
               "CRYOMAMBA_MAX_BODY_BYTES": "5000", "CRYOMAMBA_MAX_CONNECTIONS": "66"}
        s = self.run_server(("--max-connections", "55"), env=env)
        lim = s.get("/v1/server/info").json["limits"]
        self.assertEqual(lim["max_running"], 5)
        self.assertEqual(lim["max_body_bytes"], 5000)
        self.assertEqual(lim["max_connections"], 55, "flag must win over the environment")
        self.assertEqual(s.create_job({})["params"]["preview_hz"], 2.5)
        r = s.request("POST", "/v1/jobs", raw=b'{"pad":"' + b"x" * 6000 + b'"}')
        self.assertEqual(r.status, 413)
        self.stop(s)

    def test_http_idle_timeout(self):
        s = self.run_server(("--http-idle-timeout", "1"))
        c = RawHTTP(s.port)
        try:
            c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            t0 = time.monotonic()
            self.assertTrue(c.at_eof(10.0), "idle keep-alive connection never closed")
            self.assertLess(time.monotonic() - t0, 5.0)
        finally:
            c.close()
        self.stop(s)

    def test_defaults(self):
        s = self.run_server()
        info = s.get("/v1/server/info").json
        lim = info["limits"]
        self.assertEqual(lim["max_running"], 1)
        self.assertEqual(lim["max_body_bytes"], 1048576)
        self.assertEqual(s.create_job({})["params"]["preview_hz"], 1.0)
        self.stop(s)

    def test_bad_flags_fail_fast(self):
        for args in (["--port", "abc"], ["--no-such-flag"], ["--max-running", "-1"],
                     ["--preview-hz", "0"], ["--preview-hz", "100"], ["--port", "70000"]):
            with self.subTest(args=args):
                tmp = tempfile.mkdtemp(prefix="cryomamba-cfg-")
                self.addCleanup(shutil.rmtree, tmp, True)
                try:
                    p = subprocess.run([SERVER_BIN, "--port", "0", "--bind", "127.0.0.1",
                                        "--state-dir", tmp, "--data-root", tmp] + args,
                                       stdin=subprocess.DEVNULL, capture_output=True,
                                       timeout=10)
                except subprocess.TimeoutExpired:
                    self.fail("server accepted %r and kept running" % (args,))
                self.assertNotEqual(p.returncode, 0)
                self.assertNotIn(b"listening on", p.stdout)
                self.assertTrue(p.stderr.strip(), "no error message on stderr")

    def test_auth_misconfiguration_refuses_to_start(self):
        """Each of these asks for authentication and provides none: the
        server must exit 2 with a sentence naming the cause, never listen
        without authentication."""
        tmp = tempfile.mkdtemp(prefix="cryomamba-auth-")
        self.addCleanup(shutil.rmtree, tmp, True)
        empty = os.path.join(tmp, "empty")
        comments = os.path.join(tmp, "comments")
        open(empty, "w").close()
        with open(comments, "w") as f:
            f.write("# tokens go here\n\n   \n\t# none yet\n")
        cases = [(["--auth-file", empty], {}, "holds no token"),
                 (["--auth-file", comments], {}, "holds no token"),
                 ([], {"CRYOMAMBA_AUTH_FILE": comments}, "holds no token"),
                 (["--auth-file", tmp], {}, "is a directory"),
                 ([], {"CRYOMAMBA_TOKEN": ""}, "CRYOMAMBA_TOKEN is set but empty")]
        for args, extra_env, message in cases:
            with self.subTest(args=args, env=extra_env):
                env = {k: v for k, v in os.environ.items()
                       if not k.startswith("CRYOMAMBA_")}
                env.update(extra_env)
                try:
                    p = subprocess.run([SERVER_BIN, "--port", "0", "--bind", "127.0.0.1",
                                        "--state-dir", os.path.join(tmp, "state"),
                                        "--data-root", tmp] + args,
                                       stdin=subprocess.DEVNULL, capture_output=True,
                                       timeout=10, env=env)
                except subprocess.TimeoutExpired:
                    self.fail("server started with %r %r" % (args, extra_env))
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertNotIn(b"listening on", p.stdout)
                self.assertIn(message, p.stderr.decode())

    def test_stalled_stderr_does_not_block_the_server(self):
        """Nobody reads the server's stderr (a 4 KiB pipe) while it logs a
        line per connection: every request is still answered, and the log
        comes out whole, ending with the last line, once it is read."""
        tmp = tempfile.mkdtemp(prefix="cryomamba-log-")
        self.addCleanup(shutil.rmtree, tmp, True)
        proc = subprocess.Popen([SERVER_BIN, "--port", "0", "--bind", "127.0.0.1",
                                 "--state-dir", tmp, "--data-root", tmp,
                                 "--log-level", "debug"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        fcntl.fcntl(proc.stderr.fileno(), 1031, 4096)  # F_SETPIPE_SZ
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        self.assertTrue(ready, "the server did not start")
        port = int(re.search(rb":(\d+)", proc.stdout.readline()).group(1))
        for i in range(600):
            c = RawHTTP(port, timeout=5)
            try:
                c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                r = c.read_response()
            except OSError as e:  # socket.timeout: the loop is stuck on stderr
                self.fail("request %d not answered: %r" % (i, e))
            finally:
                c.close()
            self.assertEqual(r.status, 200)
        c = RawHTTP(port, timeout=5)
        try:
            c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            metrics = c.read_response().body.decode()
        finally:
            c.close()
        dropped = int(re.search(r"^cryomamba_log_lines_dropped_total (\d+)$", metrics,
                                re.M).group(1))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0)
        lines = err.decode().splitlines()
        events = [json.loads(line)["event"] for line in lines]  # each one whole
        self.assertGreater(len(err) + 100 * dropped, 16384,
                           "too little was logged to fill the pipe")
        self.assertEqual(events[-1], "server.stopped")


if __name__ == "__main__":
    main()
