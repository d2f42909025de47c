"""test_cluster_failover.py: libcryomamba's list of server URLs, through the
cryomamba CLI, against a cluster (redis + gateways A and B + one worker,
as test_cluster.py starts them). `watch --server A,B` on a longer job,
gateway A killed with SIGKILL mid-job: the watch reconnects to B, gets
every later preview with seq increasing and the terminal message, and
exits 0. `submit` / `status` with A dead fail over to B. A list of only
dead servers ends with exit 7 (REST) or 3 (watch: gave up) after bounded
attempts. A server that takes a POST and dies before answering: the job is
not created a second time on B (a GET is retried). A 4xx from the first
server is not a reason to try the next. TLS (test_tls.py's certificates
and proxies, one plain server behind them): each URL is verified with its
own host name; a dead https:// URL, or an http:// one, before a good one
fails over; a refused certificate is not failed over (exit 11 at once)."""

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cli_util import CLI_BIN, free_port, require_cli, wait_item  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import Subscriber, metric, poll  # noqa: E402
from test_tls import Proxies, make_certs  # noqa: E402

RUN_TIMEOUT = 60


def url(server):
    return "http://127.0.0.1:%d" % server.port


def dead_url():
    return "http://127.0.0.1:%d" % free_port()


def cli(*args, env=None, timeout=RUN_TIMEOUT):
    e = dict(os.environ)
    for k in ("CRYOMAMBA_TOKEN", "CRYOMAMBA_SERVER"):
        e.pop(k, None)
    if env:
        e.update(env)
    return subprocess.run([CLI_BIN] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


class Watcher:
    """`cryomamba --json --server LIST watch JOB` in the background, its
    NDJSON events collected."""

    def __init__(self, servers, job_id, *extra):
        e = dict(os.environ)
        e.pop("CRYOMAMBA_SERVER", None)
        self.proc = subprocess.Popen(
            [CLI_BIN, "--json", "--server", servers, "watch", job_id] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=e)
        self.events = []
        self.q = queue.Queue()
        self.stderr = ""
        self.t_out = threading.Thread(target=self._pump, daemon=True)
        self.t_err = threading.Thread(target=self._pump_err, daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _pump(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events.append(ev)
            self.q.put(ev)
        self.q.put(None)

    def _pump_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_event(self, pred, timeout=60):
        return wait_item(
            self.q, pred, timeout,
            lambda: "no matching watch event in %.0f s; got %r" % (timeout, self.events[-10:]),
            lambda: "watch ended before the event; events %r stderr %r"
            % (self.events[-10:], self.stderr))

    def wait(self, timeout=RUN_TIMEOUT):
        rc = self.proc.wait(timeout)
        self.t_out.join(10)
        self.t_err.join(10)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.t_out.join(10)
        self.t_err.join(10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


class DiesAfterRequest:
    """A TCP server that reads one whole HTTP request per connection (head
    and Content-Length body), counts it, and closes without answering: a
    gateway that died after taking the request."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            c.settimeout(10)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, body = buf.partition(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v.strip())
                while len(body) < n:
                    d = c.recv(65536)
                    if not d:
                        break
                    body += d
            except OSError:
                return
            with self.lock:
                self.requests.append(head.split(b"\r\n")[0].decode())

    def close(self):
        self.sock.close()


class FailoverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_cli()
        cls.redis = Redis().start()
        cls.args = ["--redis", cls.redis.url]
        cls.w = harness.Server(["--role", "worker"] + cls.args).start()
        cls.servers = [cls.w]

    @classmethod
    def tearDownClass(cls):
        try:
            for s in cls.servers:
                s.cleanup()
        finally:
            cls.redis.stop()

    def gateways(self):
        """Two fresh gateways, ready (Redis and its subscription connected)."""
        a = harness.Server(["--role", "gateway"] + self.args).start()
        b = harness.Server(["--role", "gateway"] + self.args).start()
        self.servers.extend([a, b])
        for s in (a, b):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1, what="redis on gateway")
            poll(lambda: metric(s, "cryomamba_redis_sub_connected") == 1, what="sub on gateway")
        poll(lambda: metric(self.w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")
        return a, b

    def job_count(self):
        """Jobs the cluster stored (gateways do not list jobs yet)."""
        return len([k for k in self.redis.cli("KEYS", "cm:job:*").split("\n") if k])

    def check_watch(self, w, rc, jid):
        self.assertEqual(rc, 0, w.stderr)
        kinds = [e["event"] for e in w.events]
        self.assertIn("completed", kinds, w.events[-5:])
        self.assertEqual(w.events[-1]["event"], "end")
        self.assertEqual(w.events[-1]["state"], "completed")
        # one stream, each job event once: seqs strictly increasing
        seqs = [e["seq"] for e in w.events
                if "seq" in e and e["event"] not in ("connected", "end", "error")]
        self.assertEqual(seqs, sorted(set(seqs)), "duplicate or older seq")
        return kinds

    def test_watch_goes_on_on_b_when_a_is_killed(self):
        a, b = self.gateways()
        sub = Subscriber(self.redis)  # what the worker published, for comparison
        self.addCleanup(sub.stop)
        job = b.create_job({"volume": {"shape": [16, 16, 16]},
                            "params": {"engine": "sim", "duration_s": 5.0, "preview_hz": 10}})
        jid = job["job_id"]
        w = Watcher("%s,%s" % (url(a), url(b)), jid, "--encoding", "base64")
        try:
            first = w.wait_event(lambda e: e["event"] == "preview")
            a.kill()  # SIGKILL: no close frame, the connection just dies
            again = w.wait_event(lambda e: e["event"] == "connected" and e["reconnect"], 30)
            later = w.wait_event(lambda e: e["event"] == "preview", 30)
            self.assertGreater(later["seq"], first["seq"])
            rc = w.wait()
        finally:
            w.kill()
        kinds = self.check_watch(w, rc, jid)
        self.assertIn("connection", kinds)
        after = w.events[w.events.index(again) + 1:]
        previews = [e for e in after if e["event"] == "preview"]
        self.assertGreaterEqual(len(previews), 3, "previews from B after the failover")
        self.assertEqual(w.events[-1]["reconnects"], 1)
        self.assertEqual(b.job(jid)["state"], "completed")
        # what B's job says it sent is at least what the watch got, in total
        self.assertEqual(w.events[-1]["previews"],
                         len([e for e in w.events if e["event"] == "preview"]))
        # every preview published after B's `connected` reached the watch,
        # and the terminal is the published one
        published = [json.loads(m) for m in poll(
            lambda: (lambda ms: ms if ms and json.loads(ms[-1])["type"] == "completed"
                     else None)(sub.messages("cm:ev:" + jid)), what="published terminal")]
        missed = sorted({m["seq"] for m in published
                         if m["type"] == "preview" and m["seq"] > again["last_seq"]}
                        - {e["seq"] for e in previews})
        self.assertEqual(missed, [], "previews B published that the watch missed")
        done = [e for e in w.events if e["event"] == "completed"]
        self.assertEqual(done[0]["seq"], published[-1]["seq"])

    def test_watch_first_url_dead_goes_to_b(self):
        a, b = self.gateways()
        a.kill()
        jid = b.create_job({"volume": {"shape": [16, 16, 16]},
                            "params": {"engine": "sim", "duration_s": 1.0,
                                       "preview_hz": 10}})["job_id"]
        w = Watcher("%s,%s" % (url(a), url(b)), jid)
        try:
            rc = w.wait()
        finally:
            w.kill()
        self.check_watch(w, rc, jid)

    def test_submit_and_status_fail_over_when_a_is_dead(self):
        a, b = self.gateways()
        a.kill()
        r = cli("--json", "--server", url(a), "--server", url(b), "submit",
                "--shape", "16,16,16", "--engine", "sim", "--duration", "0.5")
        self.assertEqual(r.returncode, 0, r.stderr)
        jid = json.loads(r.stdout)["job_id"]
        self.assertEqual(b.job(jid)["job_id"], jid)
        # CRYOMAMBA_SERVER takes the same list; a dead server and spaces
        r = cli("--json", "status", jid,
                env={"CRYOMAMBA_SERVER": "%s , %s" % (dead_url(), url(b))})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["job_id"], jid)
        b.wait_state(jid, "completed", timeout=30)
        # submit --watch: the create and the watch both fail over
        r = cli("--json", "--server", "%s,%s" % (url(a), url(b)), "submit",
                "--shape", "16,16,16", "--engine", "sim", "--duration", "0.5", "--watch")
        self.assertEqual(r.returncode, 0, r.stderr)
        last = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(last["event"], "end")
        self.assertEqual(last["state"], "completed")

    def test_only_dead_servers_end_after_bounded_attempts(self):
        dead = "%s,%s,%s" % (dead_url(), dead_url(), dead_url())
        t0 = time.monotonic()
        r = cli("--server", dead, "submit", "--shape", "16,16,16", timeout=30)
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("cannot reach", r.stderr)
        r = cli("--server", dead, "status", "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", timeout=30)
        self.assertEqual(r.returncode, 7, r.stderr)
        # watch: every attempt to the next dead server, then it gives up
        r = cli("--server", dead, "watch", "--max-retries", "3",
                "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", timeout=60)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("for good", r.stderr)
        self.assertLess(time.monotonic() - t0, 45)

    def test_a_post_that_may_have_been_taken_is_not_resent(self):
        a, b = self.gateways()
        before = self.job_count()
        fake = DiesAfterRequest()
        try:
            r = cli("--server", "%s,%s" % (fake.url, url(b)), "submit",
                    "--shape", "16,16,16", "--engine", "sim", "--duration", "0.2")
            self.assertEqual(r.returncode, 7, r.stderr)
            self.assertIn("may have been created", r.stderr)
            self.assertEqual(fake.requests, ["POST /v1/jobs HTTP/1.1"])
            after = self.job_count()
            self.assertEqual(after, before, "the POST was sent again to B")
            # a GET cut off the same way is asked of B
            jid = b.create_job({"volume": {"shape": [16, 16, 16]},
                                "params": {"engine": "sim", "duration_s": 0.2}})["job_id"]
            r = cli("--json", "--server", "%s,%s" % (fake.url, url(b)), "status", jid)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["job_id"], jid)
            self.assertEqual(fake.requests[-1], "GET /v1/jobs/%s HTTP/1.1" % jid)
        finally:
            fake.close()

    def test_a_4xx_is_not_a_reason_to_fail_over(self):
        a, b = self.gateways()
        missing = "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
        fake = DiesAfterRequest()  # would take anything sent to it
        try:
            r = cli("--server", "%s,%s" % (url(a), fake.url), "status", missing)
            self.assertEqual(r.returncode, 5, r.stderr)  # A's 404 stands
            r = cli("--server", "%s,%s" % (url(a), fake.url), "watch", missing)
            self.assertEqual(r.returncode, 5, r.stderr)  # 4404 from A stands
            self.assertEqual(fake.requests, [])
        finally:
            fake.close()

    def test_bad_lists_are_usage_errors(self):
        for bad in ("http://127.0.0.1:1,,http://127.0.0.1:2", "http://127.0.0.1:1,",
                    ",".join(["http://127.0.0.1:%d" % (i + 1) for i in range(17)]),
                    "http://127.0.0.1:1,ftp://x"):
            r = cli("--server", bad, "health")
            self.assertEqual(r.returncode, 64, (bad, r.stderr))


class TlsFailoverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_cli()
        cls.tmp = harness.tempfile.mkdtemp(prefix="cryomamba-tlsfo-")
        make_certs(cls.tmp)
        cls.server = harness.Server().start()
        cls.proxies = Proxies(cls.server.port)
        p = lambda n: os.path.join(cls.tmp, n)  # noqa: E731
        cls.ca = p("ca.pem")
        cls.good = "https://localhost:%d" % cls.proxies.add(p("good.pem"), p("good.key"))
        cls.wrongname = "https://localhost:%d" % cls.proxies.add(p("wrongname.pem"),
                                                                p("wrongname.key"))

    @classmethod
    def tearDownClass(cls):
        cls.proxies.close()
        cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, servers, *args):
        return cli("--server", servers, "--cacert", self.ca, *args,
                   env={"XDG_STATE_HOME": os.path.join(self.tmp, "state")})

    def test_dead_and_plain_urls_before_a_good_https_one(self):
        dead_tls = "https://localhost:%d" % free_port()
        for first in (dead_tls, dead_url()):
            r = self.cli("%s,%s" % (first, self.good), "--json", "submit",
                         "--shape", "8,16,16", "--duration", "0.3", "--watch")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout.splitlines()[-1])["state"], "completed")

    def test_a_refused_certificate_is_not_failed_over(self):
        t0 = time.monotonic()
        r = self.cli("%s,%s" % (self.wrongname, self.good), "health")
        self.assertEqual(r.returncode, 11, r.stderr)
        self.assertIn("hostname mismatch", r.stderr)
        jid = self.server.create_job(shape=[8, 16, 16], duration_s=0.3)["job_id"]
        r = self.cli("%s,%s" % (self.wrongname, self.good), "watch", jid)
        self.assertEqual(r.returncode, 11, r.stderr)
        self.assertLess(time.monotonic() - t0, 10, "refused at once, not retried")


if __name__ == "__main__":
    unittest.main()
