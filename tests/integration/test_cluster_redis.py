"""test_cluster_redis.py: what the cluster promises about Redis itself
(docs/operations.md "Cluster"). A stalled Redis (SIGSTOP: alive, sockets
open, answering nothing) makes a gateway answer within --redis-timeout-ms
(503 redis_timeout, the job possibly created, said so) and reconnect by
itself once Redis answers again; a Redis with an AOF fsync'ed before each
reply keeps every job a gateway acknowledged across kill -9 and restart, and
the worker runs them all; servers say when Redis would lose acknowledged
jobs (cryomamba_redis_durable, a redis.not_durable warning)."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import FAST, metric, poll  # noqa: E402

TIMEOUT_MS = 600


def stop_all(servers, redis):
    try:
        for s in servers:
            rc = s.stop()
            if rc != 0:
                raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
    finally:
        for s in servers:
            s.cleanup()
        redis.stop()


class StalledRedisTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis().start()
        args = ["--redis", self.redis.url, "--redis-timeout-ms", str(TIMEOUT_MS)]
        self.gw = harness.Server(["--role", "gateway"] + args).start()
        self.w = harness.Server(["--role", "worker"] + args).start()
        for s in (self.gw, self.w):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1, what="connected")

    def tearDown(self):
        if self.redis.proc and self.redis.proc.poll() is None:
            self.redis.resume()
        stop_all((self.gw, self.w), self.redis)

    def test_stalled_redis_answers_in_time_then_recovers(self):
        self.redis.pause()
        t0 = time.monotonic()
        r = self.gw.request("POST", "/v1/jobs", body=FAST, timeout=30)
        waited = time.monotonic() - t0
        harness.assert_error(self, r, 503, "redis_timeout", retryable=True)
        msg = r.json["error"]["message"]
        self.assertIn("may or may not have been created", msg)
        # the watchdog ticks at a quarter of the timeout
        self.assertGreaterEqual(waited, TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(waited, TIMEOUT_MS / 1000 * 3 + 2)
        self.assertGreaterEqual(metric(self.gw, "cryomamba_redis_timeouts_total"), 1)
        # a GET meanwhile: refused at once or after the timeout, never hung
        r = self.gw.get("/v1/jobs/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12, timeout=30)
        self.assertEqual(r.status, 503, r.body)
        self.assertIn(r.json["error"]["code"], ("redis_timeout", "redis_unavailable"))
        self.gw.assert_healthy()  # the loop serves everything else
        self.redis.resume()
        before = metric(self.gw, "cryomamba_redis_connects_total")
        poll(lambda: metric(self.gw, "cryomamba_redis_connected") == 1
             and metric(self.gw, "cryomamba_redis_connects_total") > before - 1,
             what="gateway reconnected")
        # the uncertain job is either there or not: GET tells, as promised
        job = self.gw.create_job(FAST)
        self.assertEqual(self.gw.wait_state(job["job_id"], "completed", timeout=30)["state"],
                         "completed")
        with open(self.gw.stderr_path) as f:
            self.assertIn("redis.timeout", f.read())

    def test_a_list_and_a_cancel_on_a_stalled_redis_say_redis_timeout(self):
        """Every gateway route names a stall as such, not only a create."""
        job = self.gw.create_job(dict(FAST, params=dict(FAST["params"], duration_s=60.0)))
        self.redis.pause()
        r = self.gw.get("/v1/jobs?limit=5", timeout=30)
        harness.assert_error(self, r, 503, "redis_timeout", retryable=True)
        self.assertIn("did not answer in time", r.json["error"]["message"])
        self.redis.resume()
        poll(lambda: self.gw.get("/v1/jobs?limit=5").status == 200, what="lists again")
        self.redis.pause()
        r = self.gw.request("DELETE", "/v1/jobs/" + job["job_id"], timeout=30)
        harness.assert_error(self, r, 503, "redis_timeout", retryable=True)
        self.redis.resume()
        poll(lambda: self.gw.request("DELETE", "/v1/jobs/" + job["job_id"]).status
             in (202, 409), what="the cancel taken")
        self.gw.wait_state(job["job_id"], "cancelled", timeout=30)

    def test_not_durable_redis_is_reported(self):
        # CONFIG GET's answer comes after the connect: wait for it
        for s in (self.gw, self.w):
            poll(lambda: metric(s, "cryomamba_redis_durable") is not None, what="durable known")
            self.assertEqual(metric(s, "cryomamba_redis_durable"), 0)
        with open(self.gw.stderr_path) as f:
            self.assertIn("redis.not_durable", f.read())


class FullRedisTest(unittest.TestCase):
    """Redis at its maxmemory with noeviction refuses writes (OOM): the
    gateway says so (503 redis_full, nothing created) and keeps serving;
    once Redis has room, creates work again."""

    def setUp(self):
        self.redis = Redis(extra_args=["--maxmemory", "2mb",
                                       "--maxmemory-policy", "noeviction"]).start()
        self.gw = harness.Server(["--role", "gateway", "--redis", self.redis.url]).start()
        poll(lambda: metric(self.gw, "cryomamba_redis_connected") == 1, what="connected")

    def tearDown(self):
        stop_all((self.gw,), self.redis)

    def test_out_of_memory_is_a_clear_refusal(self):
        ids = []
        for _ in range(20000):
            r = self.gw.request("POST", "/v1/jobs", body=FAST)
            if r.status != 201:
                break
            ids.append(r.json["job_id"])
        else:
            self.fail("Redis never filled up")
        harness.assert_error(self, r, 503, "redis_full", retryable=True)
        self.assertIn("out of memory", r.json["error"]["message"])
        before = int(self.redis.cli("XLEN", "cm:jobs"))
        self.assertEqual(before, len(ids), "a refused create left a stream entry")
        self.gw.assert_healthy()
        self.assertEqual(self.gw.job(ids[-1])["job_id"], ids[-1])  # reads still work
        # a cancel is a write too: refused as such, the job left as it was
        r = self.gw.request("DELETE", "/v1/jobs/" + ids[0])
        harness.assert_error(self, r, 503, "redis_full", retryable=True)
        self.assertEqual(self.redis.cli("HGET", "cm:job:" + ids[0], "cancel"), "")
        self.assertEqual(self.gw.get("/v1/jobs?limit=3").status, 200)  # lists too
        self.redis.cli("CONFIG", "SET", "maxmemory", "0")
        job = self.gw.create_job(FAST)
        self.assertEqual(self.gw.job(job["job_id"])["state"], "queued")


class DurableRedisTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis(appendonly=True, appendfsync="always").start()
        self.args = ["--redis", self.redis.url]
        self.gw = harness.Server(["--role", "gateway"] + self.args).start()
        self.w = None
        poll(lambda: metric(self.gw, "cryomamba_redis_connected") == 1, what="connected")

    def tearDown(self):
        stop_all([s for s in (self.gw, self.w) if s is not None], self.redis)

    def test_acknowledged_jobs_survive_redis_kill9(self):
        poll(lambda: metric(self.gw, "cryomamba_redis_durable") is not None, what="durable known")
        self.assertEqual(metric(self.gw, "cryomamba_redis_durable"), 1)
        ids = []
        for _ in range(20):
            ids.append(self.gw.create_job(FAST)["job_id"])
        # kill -9 right after the last 201: no shutdown save, only the AOF
        port = self.redis.port
        self.redis.kill()
        self.redis.start(port=port)
        for jid in ids:
            rec = self.redis.cli("HGET", "cm:job:" + jid, "public")
            self.assertTrue(rec, "acknowledged job %s lost by Redis" % jid)
            self.assertEqual(json.loads(rec)["job_id"], jid)
        self.assertEqual(int(self.redis.cli("XLEN", "cm:jobs")), len(ids))
        # a worker started now runs every one of them
        self.w = harness.Server(["--role", "worker", "--max-running", "4"] + self.args).start()
        poll(lambda: metric(self.gw, "cryomamba_redis_connected") == 1, what="reconnected")
        for jid in ids:
            self.assertEqual(self.gw.wait_state(jid, "completed", timeout=60)["state"],
                             "completed")
        self.assertEqual(self.redis.cli("XPENDING", "cm:jobs", "workers").split("\n")[0], "0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
