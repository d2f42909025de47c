"""test_cluster_takeover.py: a lost worker's jobs and cancel on gateways
(docs/operations.md "Cluster"). A private redis-server, two gateways and
two workers with a short lease (--worker-lease-ms 1000). The worker running
a job is killed with SIGKILL mid-job: another one takes the entry over
(XAUTOCLAIM) and, as configured, runs the job again from the start (a
subscriber that stayed on a gateway gets the `worker_lost` state event,
then previews with seqs above everything before, then `completed`), or fails
it `worker_lost` (retryable), also once --max-attempts is used up (1, and 2
with a second loss). A cancel while the job's worker is dead ends it when
it is taken over; a worker stopped with SIGTERM mid-job is taken over. A worker
frozen past its lease (SIGSTOP) and then resumed must not publish over the
new attempt (fenced). A worker killed and restarted on the same state dir
takes its own job back. Cancel (DELETE /v1/jobs/{id}) on gateway B: a running
and a queued job end `cancelled` for subscribers on gateway A; unknown 404;
ended 409. Every test ends with no pending entry in the group."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import websockets.client  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import Subscriber, metric, poll  # noqa: E402

TERMINAL = ("completed", "error", "cancelled")  # "error": the job failed
LEASE_MS = 1000
LONG = {"volume": {"shape": [16, 16, 16]},
        "params": {"engine": "sim", "duration_s": 4.0, "preview_hz": 10}}


class Cluster:
    """Redis, gateways A and B, and workers started with `worker_args`."""

    def __init__(self, worker_args=(), workers=2):
        self.redis = Redis().start()
        self.args = ["--redis", self.redis.url]
        self.a = harness.Server(["--role", "gateway"] + self.args).start()
        self.b = harness.Server(["--role", "gateway"] + self.args).start()
        self.worker_args = ["--role", "worker", "--worker-lease-ms", str(LEASE_MS)] + \
            self.args + list(worker_args)
        self.workers = [self.start_worker() for _ in range(workers)]
        self.dead = []
        for s in (self.a, self.b):
            poll(lambda: metric(s, "cryomamba_redis_sub_connected") == 1, what="sub")

    def start_worker(self, state_dir=None):
        w = harness.Server(self.worker_args, state_dir=state_dir).start()
        poll(lambda: metric(w, "cryomamba_redis_stream_connected") == 1, what="stream")
        return w

    def owner_of(self, jid):
        """The worker whose attempt owns the job now, and the attempt."""
        owner = self.redis.cli("HGET", "cm:job:" + jid, "owner")
        if "#" not in owner:
            return None, 0
        consumer, attempt = owner.rsplit("#", 1)
        pid = int(consumer.rsplit(":", 1)[1])
        for w in self.workers:
            if w.proc.pid == pid:
                return w, int(attempt)
        return None, int(attempt)

    def pending(self):
        return int(self.redis.cli("XPENDING", "cm:jobs", "workers").split("\n")[0])

    def kill9(self, w):
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)
        self.workers.remove(w)
        self.dead.append(w)

    def stop(self):
        try:
            for s in [self.a, self.b] + self.workers:
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in [self.a, self.b] + self.workers + self.dead:
                s.cleanup()
            self.redis.stop()


async def recv_until(ws, pred, got, timeout=30):
    """Appends every message to `got` until pred(msg); returns that one."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out; got %r" % [(m["type"], m["seq"]) for m in got])
        msg, _ = await harness.recv_msg(ws, left)
        got.append(msg)
        if pred(msg):
            return msg


def previews(got):
    return [m for m in got if m["type"] == "preview"]


class TakeoverTest(unittest.TestCase):
    def cluster(self, *worker_args, workers=2):
        c = Cluster(worker_args, workers)
        self.addCleanup(c.stop)
        return c

    def kill_owner_mid_job(self, c, on_lost):
        """Creates a job on A, subscribes on A, SIGKILLs its worker after 3
        previews; `on_lost(ws, got, jid)` continues. Returns what it returns."""
        jid = c.a.create_job(LONG)["job_id"]

        async def run():
            ws = await harness.ws_connect(c.a, jid)
            got = []
            try:
                await recv_until(ws, lambda m: len(previews(got)) >= 3, got)
                owner, attempt = c.owner_of(jid)
                self.assertIsNotNone(owner)
                self.assertEqual(attempt, 1)
                c.kill9(owner)
                return await on_lost(ws, got, jid)
            finally:
                await ws.close()
        return jid, asyncio.run(run())

    def assert_increasing(self, got):
        seqs = [m["seq"] for m in got if m["type"] != "connected"]
        self.assertEqual(seqs, sorted(set(seqs)), seqs)

    def test_killed_worker_requeue_another_completes(self):
        c = self.cluster()

        async def rest(ws, got, jid):
            before = len(got)
            lost = await recv_until(ws, lambda m: m["type"] == "state" and
                                    m["data"].get("reason") == "worker_lost", got)
            # a late joiner on B sees the new attempt, not the lost one
            late = await harness.ws_connect(c.b, jid)
            try:
                conn, _ = await harness.recv_msg(late)
                self.assertEqual(conn["type"], "connected")
                self.assertIn(conn["data"]["state"], ("queued", "running"))
                self.assertGreaterEqual(conn["data"]["last_seq"], lost["seq"])
            finally:
                await late.close()
            await recv_until(ws, lambda m: m["type"] in TERMINAL, got, timeout=40)
            return before, lost

        jid, (before, lost) = self.kill_owner_mid_job(c, rest)
        got_lost = lost
        self.assertEqual(got_lost["data"]["state"], "queued")
        self.assertEqual(got_lost["data"]["previous"], "running")
        self.assertEqual(got_lost["data"]["attempt"], 2)
        self.assertEqual(got_lost["data"]["progress"], 0.0)
        owner, attempt = c.owner_of(jid)
        self.assertEqual(attempt, 2)
        self.assertIs(owner, c.workers[0])
        self.assertEqual(metric(owner, "cryomamba_cluster_takeovers_total"), 1)
        self.assertEqual(c.a.job(jid)["state"], "completed")
        self.assertEqual(c.b.job(jid)["state"], "completed")
        self.assertEqual(json.loads(c.redis.cli("GET", "cm:term:" + jid))["type"],
                         "completed")
        self.assertEqual(c.pending(), 0)

    def test_killed_worker_with_attempts_used_up_fails(self):
        c = self.cluster("--max-attempts", "1")
        jid, term = self.kill_owner_mid_job(
            c, lambda ws, got, jid: recv_until(ws, lambda m: m["type"] in TERMINAL, got))
        self.assertEqual(term["type"], "error")
        self.assertEqual(term["data"]["code"], "worker_lost")
        self.assertTrue(term["data"]["retryable"])
        job = c.b.job(jid)
        self.assertEqual(job["state"], "failed")
        self.assertEqual(job["errors"][0]["code"], "worker_lost")
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_second_loss_past_max_attempts_2_fails(self):
        c = self.cluster("--max-attempts", "2", workers=3)

        async def rest(ws, got, jid):
            lost = await recv_until(ws, lambda m: m["type"] == "state" and
                                    m["data"].get("reason") == "worker_lost", got)
            self.assertEqual(lost["data"]["attempt"], 2)
            n = len(previews(got))
            await recv_until(ws, lambda m: len(previews(got)) >= n + 2, got)
            owner, attempt = c.owner_of(jid)
            self.assertEqual(attempt, 2)
            c.kill9(owner)
            term = await recv_until(ws, lambda m: m["type"] in TERMINAL, got)
            self.assert_increasing(got)
            return term
        jid, term = self.kill_owner_mid_job(c, rest)
        self.assertEqual(term["type"], "error")
        self.assertEqual(term["data"]["code"], "worker_lost")
        self.assertIn("attempt 2", term["data"]["message"])
        self.assertTrue(term["data"]["retryable"])
        self.assertEqual(c.owner_of(jid)[1], 3)
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_killed_worker_fail_mode_fails_retryable(self):
        c = self.cluster("--on-worker-lost", "fail")

        async def rest(ws, got, jid):
            term = await recv_until(ws, lambda m: m["type"] in TERMINAL, got)
            self.assert_increasing(got)
            return term
        jid, term = self.kill_owner_mid_job(c, rest)
        self.assertEqual(term["type"], "error")
        self.assertEqual(term["data"]["code"], "worker_lost")
        self.assertTrue(term["data"]["retryable"])
        self.assertEqual(c.a.job(jid)["state"], "failed")
        self.assertEqual(json.loads(c.redis.cli("GET", "cm:term:" + jid))["seq"],
                         term["seq"])
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_frozen_worker_is_fenced_when_it_resumes(self):
        c = self.cluster()
        sub = Subscriber(c.redis)
        self.addCleanup(sub.stop)
        jid = c.a.create_job(LONG)["job_id"]

        async def run():
            ws = await harness.ws_connect(c.a, jid)
            got = []
            try:
                await recv_until(ws, lambda m: len(previews(got)) >= 3, got)
                frozen, _ = c.owner_of(jid)
                os.kill(frozen.proc.pid, signal.SIGSTOP)
                try:
                    await recv_until(ws, lambda m: m.get("data", {}).get("reason") ==
                                     "worker_lost", got)
                    # the new attempt runs while the old worker is frozen
                    await recv_until(ws, lambda m: m["type"] == "preview", got)
                finally:
                    os.kill(frozen.proc.pid, signal.SIGCONT)
                await recv_until(ws, lambda m: m["type"] in TERMINAL, got, timeout=40)
                return frozen, got
            finally:
                await ws.close()
        frozen, got = asyncio.run(run())
        self.assert_increasing(got)
        self.assertEqual(got[-1]["type"], "completed")
        poll(lambda: metric(frozen, "cryomamba_cluster_fenced_total") == 1,
             what="the resumed worker fenced")
        owner, attempt = c.owner_of(jid)
        self.assertEqual(attempt, 2)
        self.assertIsNot(owner, frozen)
        # What Redis published after the takeover: only the new attempt's,
        # seqs increasing, one terminal (the resumed worker published none).
        poll(lambda: any('"completed"' in p[:30] for p in sub.messages("cm:ev:" + jid)),
             what="terminal published")
        pub = [json.loads(p) for p in sub.messages("cm:ev:" + jid)]
        i = next(k for k, m in enumerate(pub) if m.get("data", {}).get("reason") ==
                 "worker_lost")
        after = [m["seq"] for m in pub[i:]]
        self.assertEqual(after, sorted(set(after)))
        self.assertEqual(sum(1 for m in pub if m["type"] in TERMINAL), 1)
        self.assertEqual(json.loads(c.redis.cli("GET", "cm:term:" + jid))["seq"], after[-1])
        self.assertEqual(c.a.job(jid)["state"], "completed")
        self.assertEqual(c.pending(), 0)
        for w in c.workers:
            w.assert_healthy()

    def test_worker_restarted_on_its_state_dir_takes_its_job_back(self):
        c = self.cluster(workers=1)
        w = c.workers[0]
        jid = c.a.create_job(LONG)["job_id"]
        poll(lambda: c.a.job(jid)["state"] == "running", what="running")
        state_dir = w.state_dir
        c.kill9(w)
        again = c.start_worker(state_dir=state_dir)
        c.workers.append(again)
        done = c.b.wait_state(jid, ("completed", "failed"), timeout=40)
        self.assertEqual(done["state"], "completed", done)
        owner, attempt = c.owner_of(jid)
        self.assertIs(owner, again)
        self.assertEqual(attempt, 2)
        self.assertEqual(c.pending(), 0)


    def test_cancel_of_a_job_whose_worker_died(self):
        c = self.cluster()

        async def rest(ws, got, jid):
            r = c.b.request("DELETE", "/v1/jobs/" + jid)
            self.assertEqual(r.status, 202, r.body)
            self.assertEqual(r.json["state"], "running")  # as far as Redis knows
            return await recv_until(ws, lambda m: m["type"] in TERMINAL, got)
        jid, term = self.kill_owner_mid_job(c, rest)
        self.assertEqual(term["type"], "cancelled")
        self.assertEqual(c.owner_of(jid), (c.workers[0], 2))
        self.assertEqual(c.a.job(jid)["state"], "cancelled")
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_worker_stopped_with_sigterm_mid_job_is_taken_over(self):
        c = self.cluster()
        jid = c.a.create_job(LONG)["job_id"]
        poll(lambda: c.owner_of(jid)[0] is not None and
             c.a.job(jid)["state"] == "running", what="running")
        owner, _ = c.owner_of(jid)
        self.assertEqual(owner.stop(), 0)  # engines stopped, the entry stays pending
        c.workers.remove(owner)
        c.dead.append(owner)
        done = c.b.wait_state(jid, ("completed", "failed"), timeout=40)
        self.assertEqual(done["state"], "completed", done)
        self.assertEqual(c.owner_of(jid), (c.workers[0], 2))
        self.assertEqual(c.pending(), 0)


class LeaseFlagsTest(unittest.TestCase):
    def refused(self, args, needle):
        p = subprocess.run([harness.SERVER_BIN, "--port", "0", "--role", "worker",
                            "--redis", "redis://127.0.0.1:1"] + args,
                           capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertIn(needle, p.stderr.decode())

    def test_bad_values_are_refused_at_start(self):
        self.refused(["--worker-lease-ms", "50"], "--worker-lease-ms")
        self.refused(["--worker-lease-ms", "x"], "--worker-lease-ms")
        self.refused(["--on-worker-lost", "retry"], "invalid value 'retry' for --on-worker-lost")
        self.refused(["--max-attempts", "0"], "--max-attempts")
        self.refused(["--max-attempts", "101"], "--max-attempts")


class CancelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def cancel(self, jid, server=None):
        return (server or self.c.b).request("DELETE", "/v1/jobs/" + jid)

    def test_running_job_cancelled_on_b_subscriber_on_a(self):
        c = self.c
        jid = c.a.create_job(LONG)["job_id"]

        async def run():
            ws = await harness.ws_connect(c.a, jid)
            got = []
            try:
                await recv_until(ws, lambda m: m["type"] == "preview", got)
                r = self.cancel(jid)
                self.assertEqual(r.status, 202, r.body)
                self.assertEqual(r.json, {"job_id": jid, "status": "cancelling",
                                          "state": "running"})
                t0 = time.monotonic()
                term = await recv_until(ws, lambda m: m["type"] in TERMINAL,
                                        got, timeout=10)
                return term, time.monotonic() - t0
            finally:
                await ws.close()
        term, took = asyncio.run(run())
        self.assertEqual(term["type"], "cancelled")
        self.assertLess(took, 2.5)  # the renewal tick (333 ms here), not the job's end
        self.assertEqual(c.b.job(jid)["state"], "cancelled")
        r = self.cancel(jid)
        harness.assert_error(self, r, 409, "job_finished", retryable=False)
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_purge_0_cancels_and_purge_1_refuses_a_running_job(self):
        """As on --role all: only ?purge=1 (or true) purges; ?purge=0 is a
        cancel (it was a 501 on gateways)."""
        c = self.c
        jid = c.a.create_job(LONG)["job_id"]
        c.b.wait_state(jid, "running", timeout=30)
        r = c.a.request("DELETE", "/v1/jobs/" + jid + "?purge=1")
        harness.assert_error(self, r, 409, "job_active", retryable=False)
        r = c.b.request("DELETE", "/v1/jobs/" + jid + "?purge=0")
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(r.json["status"], "cancelling")
        c.a.wait_state(jid, "cancelled", timeout=30)
        r = c.a.request("DELETE", "/v1/jobs/" + jid + "?purge=true")
        self.assertEqual((r.status, r.json["status"]), (200, "deleted"), r.body)
        self.assertEqual(c.b.get("/v1/jobs/" + jid).status, 404)

    def test_queued_job_cancelled_at_once_without_a_free_worker(self):
        """A queued job no worker has taken ends at the cancel (200, as on
        --role all), not when a worker frees a slot: base64 and chunks
        subscribers get the terminal while every worker is still busy, and
        the worker that later reads its entry acknowledges it unrun."""
        c = self.c
        busy = [c.a.create_job(LONG)["job_id"] for _ in c.workers]
        for jid in busy:
            poll(lambda: c.a.job(jid)["state"] == "running", what="workers busy")
        jid = c.a.create_job(LONG)["job_id"]

        async def run():
            ws = await harness.ws_connect(c.a, jid)
            wc = await websockets.client.connect(
                c.b.ws_url(jid) + "?encoding=chunks&scale=1", max_size=2 ** 28,
                open_timeout=harness.EV, ping_interval=None)
            got = []
            try:
                conn, _ = await harness.recv_msg(ws)
                self.assertEqual(conn["data"]["state"], "queued")
                r = self.cancel(jid)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json, {"job_id": jid, "status": "cancelled",
                                          "state": "cancelled"})
                term = await recv_until(ws, lambda m: m["type"] in TERMINAL, got, timeout=15)
                # the chunks subscriber was waiting for a worker's table
                chunk_msgs = []
                while True:
                    raw = await asyncio.wait_for(wc.recv(), 15)
                    if isinstance(raw, str):
                        chunk_msgs.append(json.loads(raw))
                        if chunk_msgs[-1]["type"] in TERMINAL:
                            break
                return term, got, chunk_msgs
            finally:
                await ws.close()
                await wc.close()
        term, got, chunk_msgs = asyncio.run(run())
        self.assertEqual(term["type"], "cancelled")
        self.assertEqual([m["type"] for m in chunk_msgs][0], "connected")
        self.assertEqual(chunk_msgs[-1]["type"], "cancelled")
        self.assertEqual(chunk_msgs[-1]["seq"], term["seq"])
        self.assertFalse([m for m in got if m["type"] in ("preview", "progress")], got)
        for b in busy:  # still running: nobody freed a slot for the cancel
            self.assertEqual(c.b.job(b)["state"], "running")
        self.assertEqual(c.b.job(jid)["state"], "cancelled")
        self.assertEqual(c.redis.cli("HGET", "cm:job:" + jid, "attempt"), "")
        self.assertNotEqual(c.redis.cli("ZSCORE", "cm:jobs:finished", jid), "")
        r = self.cancel(jid)
        harness.assert_error(self, r, 409, "job_finished", retryable=False)
        for b in busy:
            self.assertEqual(self.cancel(b).status, 202)
        for b in busy:
            c.a.wait_state(b, "cancelled", timeout=10)
        # a freed worker reads the cancelled job's entry and acks it unrun
        def lag():
            f = c.redis.cli("XINFO", "GROUPS", "cm:jobs").split("\n")
            return dict(zip(f[::2], f[1::2])).get("lag")
        poll(lambda: c.pending() == 0 and lag() == "0",
             what="every entry read and acknowledged")
        self.assertEqual(c.redis.cli("HGET", "cm:job:" + jid, "attempt"), "")
        self.assertEqual(c.a.job(jid)["state"], "cancelled")

    def test_cancel_unknown_bad_and_purge(self):
        r = self.cancel("0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10")
        harness.assert_error(self, r, 404, "job_not_found", retryable=False)
        r = self.cancel("not-a-uuid")
        harness.assert_error(self, r, 400, "invalid_job_id", retryable=False)
        r = self.c.b.request("DELETE", "/v1/jobs/0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10?purge=1")
        harness.assert_error(self, r, 404, "job_not_found", retryable=False)



class QueuedCancelRaceTest(unittest.TestCase):
    """No worker at all: every job stays queued. Four cancels of one job at
    once on two gateways end it once: each answer is 200 (ended by this
    cancel or a concurrent one) or 409, one terminal message is stored,
    and the job is cancelled everywhere."""

    def setUp(self):
        self.c = Cluster(workers=0)

    def tearDown(self):
        self.c.stop()

    def test_concurrent_cancels_of_a_queued_job(self):
        c = self.c
        seen = set()
        for _ in range(8):
            jid = c.a.create_job(LONG)["job_id"]
            got = []
            threads = [threading.Thread(target=lambda s=s: got.append(
                s.request("DELETE", "/v1/jobs/" + jid).status)) for s in (c.a, c.b, c.a, c.b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertTrue(set(got) <= {200, 409}, got)
            self.assertIn(200, got)
            seen.update(got)
            term = json.loads(c.redis.cli("GET", "cm:term:" + jid))
            self.assertEqual(term["type"], "cancelled")
            for s in (c.a, c.b):
                self.assertEqual(s.job(jid)["state"], "cancelled")
            self.assertEqual(c.redis.cli("HGET", "cm:job:" + jid, "seq"), str(term["seq"]))

if __name__ == "__main__":
    unittest.main(verbosity=2)
