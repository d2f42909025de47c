"""test_cluster_terminal.py: a job that ends on a worker while Redis is down
(docs/operations.md "Cluster"). Redis with an AOF (it keeps its data across
kill -9 and a start on the same port), gateway A, two workers with a 1 s
lease. Redis is killed mid-job; the owner's job ends locally (its
cryomamba_cluster_terminals_pending gauge says 1) and stays pending past
several leases; Redis starts again: the worker stores the terminal record
(hash completed, cm:term, entry acknowledged), no worker takes the job again
(one cluster.job_taken for it in all logs), and a WebSocket subscriber that
stayed on the gateway gets `completed` after the final preview (lost in the
outage, published again). Also: a chunks subscriber's mask is the final
one; and Redis frozen (commands time out) instead of killed."""

import asyncio
import base64
import json
import os
import sys
import time
import unittest

import numpy as np
import websockets
import websockets.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from chunk_client import ChunkClient, follow  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import metric, poll  # noqa: E402

LEASE_MS = 1000
JOB = {"volume": {"shape": [32, 40, 36]},
       "params": {"engine": "sim", "duration_s": 1.5, "preview_hz": 8,
                  "pattern": "blobs", "preview_scale": 1, "seed": 7}}
WAIT = 60 * harness.SPEED_SCALE


class TerminalTest(unittest.TestCase):
    WORKER_ARGS = []

    def setUp(self):
        self.redis = Redis(appendonly=True).start()
        args = ["--redis", self.redis.url]
        self.a = harness.Server(["--role", "gateway"] + args).start()
        self.workers = []
        for _ in range(2):
            w = harness.Server(["--role", "worker", "--worker-lease-ms", str(LEASE_MS)]
                               + args + self.WORKER_ARGS).start()
            self.workers.append(w)
            poll(lambda: metric(w, "cryomamba_redis_stream_connected") == 1, what="stream")
        poll(lambda: metric(self.a, "cryomamba_redis_sub_connected") == 1, what="sub")

    def tearDown(self):
        try:
            for s in [self.a] + self.workers:
                rc = s.stop()
                self.assertEqual(rc, 0, s.stderr_tail(2000))
        finally:
            for s in [self.a] + self.workers:
                s.cleanup()
            self.redis.stop()

    def owner(self, jid):
        owner = self.redis.cli("HGET", "cm:job:" + jid, "owner")
        pid = int(owner.rsplit("#", 1)[0].rsplit(":", 1)[1])
        return next(w for w in self.workers if w.proc.pid == pid)

    def taken(self, jid):
        n = 0
        for w in self.workers:
            with open(w.stderr_path, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if "cluster.job_taken" in line and jid in line:
                        n += 1
        return n

    def outage_until_ended(self, jid, pause=False):
        """Kills Redis once the job ran a little (pause: SIGSTOPs it, so
        commands time out), waits for the owner's local end (terminal
        pending) and a few leases, starts (resumes) Redis again."""
        poll(lambda: self.redis.cli("HGET", "cm:job:" + jid, "owner"), what="owner")
        w = self.owner(jid)
        poll(lambda: self.redis.cli("GET", "cm:prev:" + jid), what="a preview")
        port = self.redis.port
        if pause:
            self.redis.pause()
        else:
            self.redis.kill()
        poll(lambda: metric(w, "cryomamba_cluster_terminals_pending") == 1,
             timeout=WAIT, what="the job ended on its worker")
        # past several leases with the end only on the worker
        deadline = time.monotonic() + 3 * LEASE_MS / 1000
        while time.monotonic() < deadline:
            self.assertEqual(metric(w, "cryomamba_cluster_terminals_pending"), 1)
            time.sleep(0.1)
        if pause:
            self.assertGreater(metric(w, "cryomamba_redis_timeouts_total"), 0)
            self.redis.resume()
        else:
            self.redis.start(port=port)
        poll(lambda: metric(w, "cryomamba_cluster_terminals_pending") == 0,
             timeout=WAIT, what="the terminal stored")
        return w

    def assert_ended_once(self, jid):
        pub = json.loads(self.redis.cli("HGET", "cm:job:" + jid, "public"))
        self.assertEqual(pub["state"], "completed")
        term = json.loads(self.redis.cli("GET", "cm:term:" + jid))
        self.assertEqual(term["type"], "completed")
        self.assertEqual(self.redis.cli("XPENDING", "cm:jobs", "workers").split("\n")[0], "0")
        # a lease later nobody took the job again
        deadline = time.monotonic() + 2 * LEASE_MS / 1000
        while time.monotonic() < deadline:
            self.assertEqual(self.taken(jid), 1)
            time.sleep(0.1)
        self.assertEqual(self.redis.cli("HGET", "cm:job:" + jid, "attempt"), "1")
        return term

    def run_with_subscriber(self, jid, query=""):
        """A subscriber on A from the start; returns the messages it got."""
        async def run():
            got = []
            async with websockets.client.connect(self.a.ws_url(jid) + query,
                                                 max_size=None, open_timeout=harness.EV,
                                                 ping_interval=None) as ws:
                loop = asyncio.get_running_loop()
                outage = loop.run_in_executor(None, self.outage_until_ended, jid)
                client = ChunkClient() if query else None
                if client is not None:
                    await asyncio.wait_for(follow(ws, client), WAIT)
                else:
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), WAIT)
                        got.append(json.loads(raw))
                        if got[-1]["type"] in ("completed", "error", "cancelled"):
                            break
                await outage
                return client or got
        return asyncio.run(run())

    def test_a_job_ending_while_redis_is_down_is_stored_once_redis_is_back(self):
        jid = self.a.create_job(JOB)["job_id"]
        got = self.run_with_subscriber(jid)
        term = self.assert_ended_once(jid)
        self.assertEqual(got[-1]["type"], "completed")
        self.assertEqual(got[-1]["seq"], term["seq"])
        # the final preview, lost in the outage, was published again
        prev = json.loads(self.redis.cli("GET", "cm:prev:" + jid))
        self.assertEqual([m for m in got if m["type"] == "preview"][-1]["seq"], prev["seq"])
        self.assertEqual(prev["seq"], term["seq"] - 1)

    def test_a_chunks_subscriber_gets_the_final_mask_after_the_outage(self):
        jid = self.a.create_job(JOB)["job_id"]
        client = self.run_with_subscriber(jid, "?encoding=chunks&scale=1")
        self.assert_ended_once(jid)
        self.assertEqual(client.terminal["type"], "completed")
        prev = json.loads(self.redis.cli("GET", "cm:prev:" + jid))
        full = np.frombuffer(base64.b64decode(prev["data"]["payload"]),
                             dtype=np.uint8).reshape(prev["data"]["shape"])
        term = json.loads(self.redis.cli("GET", "cm:term:" + jid))
        self.assertGreater(int((full > 0).sum()), 0, (prev["seq"], term["seq"]))
        self.assertEqual(int((client.mask(0) != full).sum()), 0)



class TerminalTimeoutTest(TerminalTest):
    """Redis frozen (SIGSTOP) instead: the worker's commands time out
    (--redis-timeout-ms), its reconnects too, until Redis resumes."""
    WORKER_ARGS = ["--redis-timeout-ms", "500"]

    def test_a_job_ending_while_redis_is_frozen_is_stored_once(self):
        jid = self.a.create_job(JOB)["job_id"]
        self.outage_until_ended(jid, pause=True)
        self.assert_ended_once(jid)

    # the inherited tests run once, in TerminalTest
    test_a_job_ending_while_redis_is_down_is_stored_once_redis_is_back = None
    test_a_chunks_subscriber_gets_the_final_mask_after_the_outage = None


if __name__ == "__main__":
    harness.main()
