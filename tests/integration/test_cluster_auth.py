"""test_cluster_auth.py: a Redis that wants a password (docs/operations.md
"Cluster", "Redis with a password"). A private redis-server with
requirepass and an ACL user: a gateway authenticating as the default user
(password in --redis) and a worker as the ACL user (the user in --redis,
its password in --redis-password-file) run a job to the end, and neither
password reaches a log line. A wrong password, or none for a Redis that
wants one, keeps the process up and says so once (redis.auth_failed,
redis.auth_required), however often the connection is tried again;
requests answer 503 redis_unavailable meanwhile; once Redis takes the
password (CONFIG SET requirepass) the gateway connects by itself. A user
without a password is refused at start (exit 2)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import FAST, metric, poll  # noqa: E402

GATEWAY_PW = "gw-s3cret@:/%"  # escaped in the URL below
WORKER_PW = "worker pass phrase"
ESCAPED_GATEWAY_PW = "gw-s3cret%40%3A%2F%25"


def log_events(server, event):
    with open(server.stderr_path, "rb") as f:
        return [json.loads(line) for line in f if b'"%s"' % event.encode() in line]


def log_text(server):
    with open(server.stderr_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def connections_received(redis):
    for line in redis.cli("INFO", "stats").splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.split(":")[1])
    raise AssertionError("no total_connections_received in INFO stats")


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-auth-")
        cls.redis = Redis(password=GATEWAY_PW).start()
        # The worker's own user, as docs/operations.md suggests: the cm: keys and
        # channels, every command.
        cls.redis.cli("ACL", "SETUSER", "cmworker", "on", ">" + WORKER_PW, "~cm:*", "&cm:*",
                      "+@all")
        pw_file = os.path.join(cls.tmp, "redis-password")
        with open(pw_file, "w") as f:
            f.write(WORKER_PW + "\n")
        os.chmod(pw_file, 0o600)
        host = "127.0.0.1:%d" % cls.redis.port
        cls.a = harness.Server(["--role", "gateway", "--redis",
                                "redis://:%s@%s" % (ESCAPED_GATEWAY_PW, host)]).start()
        cls.w = harness.Server(["--role", "worker", "--redis", "redis://cmworker:@%s" % host,
                                "--redis-password-file", pw_file]).start()

    @classmethod
    def tearDownClass(cls):
        try:
            for s in (cls.a, cls.w):
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in (cls.a, cls.w):
                s.cleanup()
            cls.redis.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_job_runs_with_auth_and_no_password_is_logged(self):
        for s in (self.a, self.w):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1,
                 what="redis connected on %d" % s.port)
        poll(lambda: metric(self.w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")
        job = self.a.create_job(FAST)
        done = self.a.wait_state(job["job_id"], "completed", timeout=60)
        self.assertEqual(done["state"], "completed")
        # The worker's connections are its ACL user's, the gateway's the
        # default user's.
        clients = self.redis.cli("CLIENT", "LIST")
        self.assertIn("user=cmworker", clients)
        self.assertIn("user=default", clients)
        for s in (self.a, self.w):
            connected = log_events(s, "redis.connected")
            self.assertTrue(connected)
            self.assertTrue(all(e["auth"] == 1 for e in connected), connected)
            text = log_text(s)
            for secret in (GATEWAY_PW, ESCAPED_GATEWAY_PW, WORKER_PW):
                self.assertNotIn(secret, text)
            self.assertEqual(log_events(s, "redis.auth_failed"), [])


class WrongPasswordTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis(password="the-right-one").start()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
            s.cleanup()
        self.redis.stop()

    def gateway(self, url_auth):
        s = harness.Server(["--role", "gateway", "--redis",
                            "redis://%s127.0.0.1:%d" % (url_auth, self.redis.port)]).start()
        self.servers.append(s)
        return s

    def told_once_then_connects_when_redis_takes_it(self, s, event, password):
        before = connections_received(self.redis)
        poll(lambda: log_events(s, event), what=event)
        self.assertEqual(metric(s, "cryomamba_redis_connected"), 0)
        r = s.request("POST", "/v1/jobs", body=FAST)
        harness.assert_error(self, r, 503, "redis_unavailable")
        # Tried again with the backoff (100, 200, 400 ms ...), told once.
        poll(lambda: connections_received(self.redis) >= before + 3, timeout=30,
             what="reconnect attempts")
        conns = [e["conn"] for e in log_events(s, event)]
        self.assertEqual(sorted(conns), sorted(set(conns)),
                         "one error per connection and outage, not per attempt")
        self.assertIn("cmd", conns)
        self.assertEqual(metric(s, "cryomamba_redis_connected"), 0)
        # The operator fixes Redis's side: the gateway gets in by itself.
        self.redis.cli("CONFIG", "SET", "requirepass", password)
        self.redis.password = password
        poll(lambda: metric(s, "cryomamba_redis_connected") == 1, timeout=30,
             what="connected once Redis takes the password")
        job = s.create_job(FAST)
        self.assertEqual(job["state"], "queued")

    def test_wrong_password_is_told_once_and_retried(self):
        s = self.gateway(":wrong-one@")
        self.told_once_then_connects_when_redis_takes_it(s, "redis.auth_failed", "wrong-one")
        e = log_events(s, "redis.auth_failed")[0]
        self.assertEqual(e["level"], "error")
        self.assertIn("WRONGPASS", e["error"])
        self.assertNotIn("wrong-one", log_text(s))

    def test_no_password_for_a_redis_that_wants_one(self):
        s = self.gateway("")
        e = poll(lambda: log_events(s, "redis.auth_required"), what="auth_required")[0]
        self.assertIn("NOAUTH", e["error"])
        # Redis drops the password: a gateway without one now gets in.
        self.redis.cli("CONFIG", "SET", "requirepass", "")
        self.redis.password = None
        poll(lambda: metric(s, "cryomamba_redis_connected") == 1, timeout=30,
             what="connected once Redis wants no password")

    def test_user_without_password_is_refused_at_start(self):
        p = subprocess.run([harness.SERVER_BIN, "--port", "0", "--role", "worker", "--redis",
                            "redis://cmworker:@127.0.0.1:%d" % self.redis.port],
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("user 'cmworker' needs a password", p.stderr.decode())
        p = subprocess.run([harness.SERVER_BIN, "--port", "0", "--role", "worker", "--redis",
                            "redis://127.0.0.1:%d" % self.redis.port,
                            "--redis-password-file", "/nonexistent/redis-pw"],
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--redis-password-file /nonexistent/redis-pw: No such file",
                      p.stderr.decode())


if __name__ == "__main__":
    harness.main()
