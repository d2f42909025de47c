"""test_cluster.py: gateways and workers over Redis (--role gateway|worker,
docs/operations.md "Cluster"). A private redis-server (redis_util.py), two
gateways and one worker on loopback: a job created on gateway A is stored
in Redis before its 201, is seen on gateway B, is run by the worker, whose
events (the exact payloads subscribers get) are published on cm:ev:<id>
with the latest state, preview and terminal message kept in Redis, and the
stream entry is acknowledged once the terminal record is stored. Redis
killed and restarted: every process reconnects by itself and a new job
runs. Bad role combinations are refused at start."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import websockets.client  # noqa: E402
import websockets.exceptions  # noqa: E402
from redis_util import Redis  # noqa: E402

FAST = {"volume": {"shape": [16, 16, 16]},
        "params": {"engine": "sim", "duration_s": 0.6, "preview_hz": 10}}
LONGER = {"volume": {"shape": [16, 16, 16]},
          "params": {"engine": "sim", "duration_s": 2.0, "preview_hz": 10}}
TERMINAL = ("completed", "failed", "cancelled")


async def collect_until_terminal(server, jid, timeout=30):
    """Every message (dict, raw) a subscriber on `server` gets up to the
    terminal message."""
    ws = await harness.ws_connect(server, jid)
    got = []
    try:
        await harness.recv_until(ws, lambda m: m["type"] in TERMINAL, timeout,
                                 collect=got)
    finally:
        await ws.close()
    return [(m, raw) for m, raw, _ in got]


def metric(server, name):
    r = server.get("/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


def poll(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Subscriber(threading.Thread):
    """redis-cli PSUBSCRIBE cm:ev:*, collecting every job's messages; ready
    once Redis confirmed the subscription."""

    def __init__(self, redis):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(
            [harness.shutil.which("redis-cli") or "redis-cli", "-p", str(redis.port),
             "--raw", "PSUBSCRIBE", "cm:ev:*"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        self.lines = []
        self.start()
        poll(lambda: "psubscribe" in self.lines, what="psubscribe confirmed")

    def run(self):
        for raw in self.proc.stdout:
            # chunk batches are binary (and may hold newlines): replaced
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def messages(self, channel):
        # --raw prints "pmessage", pattern, channel, payload for each one;
        # the JSON events only (chunk batches start with "CMC1")
        ls = list(self.lines)
        return [ls[i + 3] for i in range(len(ls) - 3)
                if ls[i] == "pmessage" and ls[i + 2] == channel and ls[i + 3][:1] == "{"]

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis().start()
        args = ["--redis", cls.redis.url]
        cls.a = harness.Server(["--role", "gateway"] + args).start()
        cls.b = harness.Server(["--role", "gateway"] + args).start()
        cls.w = harness.Server(["--role", "worker"] + args).start()

    @classmethod
    def tearDownClass(cls):
        try:
            for s in (cls.a, cls.b, cls.w):
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in (cls.a, cls.b, cls.w):
                s.cleanup()
            cls.redis.stop()

    def wait_connected(self, servers=None):
        for s in servers or (self.a, self.b, self.w):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1,
                 what="redis connected on %d" % s.port)
        poll(lambda: metric(self.w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")

    def run_job(self):
        job = self.a.create_job(FAST)
        jid = job["job_id"]
        self.assertEqual(job["state"], "queued")
        # acknowledged only after Redis has both the record and the entry
        self.assertEqual(json.loads(self.redis.cli("HGET", "cm:job:" + jid, "public"))["job_id"],
                         jid)
        return jid

    def test_job_created_on_a_runs_on_worker_seen_on_b(self):
        self.wait_connected()
        sub = Subscriber(self.redis)
        try:
            jid = self.run_job()
            self.assertEqual(self.b.job(jid)["job_id"], jid)
            done = self.b.wait_state(jid, "completed", timeout=30)
            self.assertEqual(done["state"], "completed")
            self.assertEqual(self.a.job(jid)["state"], "completed")
            term = json.loads(poll(lambda: self.redis.cli("GET", "cm:term:" + jid),
                                   what="terminal message"))
            self.assertEqual(term["type"], "completed")
            self.assertEqual(term["job_id"], jid)
            prev = json.loads(self.redis.cli("GET", "cm:prev:" + jid))
            self.assertEqual(prev["type"], "preview")
            self.assertLess(prev["seq"], term["seq"])
            # the stream entry was acknowledged once the terminal was stored
            poll(lambda: self.redis.cli("XPENDING", SRV_STREAM, "workers").split("\n")[0] == "0",
                 what="no pending entry")
            # what was published on the channel is the same frames, in seq order
            msgs = poll(lambda: (lambda m: m if m and json.loads(m[-1])["type"] == "completed"
                                 else None)(sub.messages("cm:ev:" + jid)), what="published terminal")
            seqs = [json.loads(m)["seq"] for m in msgs]
            self.assertEqual(seqs, sorted(seqs))
            self.assertEqual(msgs[-1], self.redis.cli("GET", "cm:term:" + jid))
            self.assertIn(self.redis.cli("GET", "cm:prev:" + jid), msgs)
        finally:
            sub.stop()

    def check_stream(self, msgs, jid):
        """connected first, then strictly increasing seqs, terminal last."""
        self.assertEqual(msgs[0][0]["type"], "connected")
        self.assertEqual(msgs[0][0]["job_id"], jid)
        seqs = [m["seq"] for m, _ in msgs[1:]]
        self.assertEqual(seqs, sorted(set(seqs)), "duplicate or older seq")
        self.assertIn(msgs[-1][0]["type"], TERMINAL)

    def test_ws_subscribers_on_two_gateways_get_identical_frames(self):
        self.wait_connected()
        for s in (self.a, self.b):
            poll(lambda: metric(s, "cryomamba_redis_sub_connected") == 1, what="sub connected")
        jid = self.a.create_job(LONGER)["job_id"]

        async def both():
            return await asyncio.gather(collect_until_terminal(self.a, jid),
                                        collect_until_terminal(self.b, jid))
        on_a, on_b = asyncio.run(both())
        for msgs in (on_a, on_b):
            self.check_stream(msgs, jid)
        prev_a = {m["seq"]: raw for m, raw in on_a if m["type"] == "preview"}
        prev_b = {m["seq"]: raw for m, raw in on_b if m["type"] == "preview"}
        common = set(prev_a) & set(prev_b)
        self.assertGreaterEqual(len(common), 3, (sorted(prev_a), sorted(prev_b)))
        for seq in common:
            self.assertEqual(prev_a[seq], prev_b[seq], "preview %d differs" % seq)
        term = self.redis.cli("GET", "cm:term:" + jid)
        self.assertEqual(on_a[-1][1], term)
        self.assertEqual(on_b[-1][1], term)
        self.assertEqual(on_a[-1][0]["type"], "completed")
        # the worker's final preview, byte for byte, is the last one both saw
        last = self.redis.cli("GET", "cm:prev:" + jid)
        self.assertEqual(prev_a[max(prev_a)], last)
        self.assertEqual(prev_b[max(prev_b)], last)

    def test_ws_late_joiner_on_b_gets_latest_preview_and_terminal(self):
        self.wait_connected()
        jid = self.run_job()
        self.b.wait_state(jid, "completed", timeout=30)
        term = poll(lambda: self.redis.cli("GET", "cm:term:" + jid), what="terminal stored")

        async def late():
            ws = await harness.ws_connect(self.b, jid)
            try:
                return [await harness.recv_msg(ws) for _ in range(3)]
            finally:
                await ws.close()
        (conn, _), (prev, prev_raw), (done, done_raw) = asyncio.run(late())
        self.assertEqual(conn["type"], "connected")
        self.assertEqual(conn["data"]["state"], "completed")
        self.assertEqual(conn["data"]["last_seq"], done["seq"])
        self.assertEqual(prev["type"], "preview")
        self.assertEqual(prev_raw, self.redis.cli("GET", "cm:prev:" + jid))
        self.assertEqual(done_raw, term)

    def test_ws_rejoin_right_after_the_last_leave_on_a_gateway(self):
        """The last subscriber leaves (the gateway UNSUBSCRIBEs) and new ones
        join at once, before or after Redis confirms: each gets the stream
        to the terminal message."""
        self.wait_connected()
        jid = self.a.create_job(LONGER)["job_id"]

        async def churn():
            for _ in range(3):
                ws = await harness.ws_connect(self.a, jid)
                await harness.recv_type(ws, "preview", 20)
                ws.transport.abort()  # gone at once, no closing handshake
            return await collect_until_terminal(self.a, jid)
        msgs = asyncio.run(churn())
        self.check_stream(msgs, jid)
        self.assertEqual(msgs[-1][1], self.redis.cli("GET", "cm:term:" + jid))

    def test_ws_unknown_job_and_other_encodings_on_a_gateway(self):
        self.wait_connected()

        async def unknown():
            ws = await harness.ws_connect(self.a, harness.new_uuid())
            return (await harness.wait_closed_code(ws))[0]
        self.assertEqual(asyncio.run(unknown()), 4404)
        # every encoding is served on a gateway (test_cluster_encodings.py):
        # an unknown job is 4404 whatever the encoding
        for q in ("raw", "zstd", "chunks"):
            async def unknown_enc():
                ws = await websockets.client.connect(
                    self.a.ws_url(harness.new_uuid()) + "?encoding=" + q,
                    open_timeout=harness.EV)
                return (await harness.wait_closed_code(ws))[0]
            self.assertEqual(asyncio.run(unknown_enc()), 4404, q)

    def test_ws_subscriber_survives_a_redis_restart_mid_job(self):
        """The gateway keeps its subscriber (or closes it with 1011/1001 and
        the client reconnects); either way the stream stays in seq order,
        without a duplicate, and ends with the terminal message."""
        self.wait_connected()
        body = {"volume": {"shape": [16, 16, 16]},
                "params": {"engine": "sim", "duration_s": 4.0, "preview_hz": 10}}
        jid = self.a.create_job(body)["job_id"]
        port = self.redis.port

        async def run():
            got = []
            ws = await harness.ws_connect(self.a, jid)
            await harness.recv_type(ws, "preview", 20, collect=got)
            self.redis.kill()
            self.redis.start(port=port)
            self.n_before = len(got)
            for _ in range(5):
                try:
                    await harness.recv_until(ws, lambda m: m["type"] in TERMINAL, 30,
                                             collect=got)
                    await ws.close()
                    return got
                except websockets.exceptions.ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd is not None else None
                    self.assertIn(code, (1011, 1001))
                    ws = await harness.ws_connect(self.a, jid)
            raise AssertionError("no terminal message after reconnects")
        got = [(m, raw) for m, raw, _ in asyncio.run(run())]
        self.assertEqual(got[-1][0]["type"], "completed")
        seqs = [m["seq"] for m, _ in got if m["type"] != "connected"]
        self.assertEqual(seqs, sorted(set(seqs)), "duplicate or older seq")
        # previews kept coming through the gateway after the restart
        self.assertTrue(any(m["type"] == "preview" for m, _ in got[self.n_before:]))
        self.assertGreater(metric(self.a, "cryomamba_redis_connects_total"), 1)
        self.wait_connected()

    def test_unknown_job_is_404_on_a_gateway(self):
        self.wait_connected()
        harness.assert_error(self, self.b.get("/v1/jobs/" + harness.new_uuid()), 404,
                             "job_not_found")

    def test_unserved_routes_are_refused_clearly(self):
        self.wait_connected()
        # no --shared-dir here: volumes need one (test_cluster_volumes.py)
        harness.assert_error(self, self.a.get("/v1/volumes"), 501, "shared_dir_required")
        harness.assert_error(self, self.w.request("POST", "/v1/jobs", body=FAST), 404,
                             "not_served_here")
        r = self.a.request("POST", "/v1/jobs",
                           body={"volume_path": "x.mrc", "params": {"engine": "sim"}})
        harness.assert_error(self, r, 400, "shared_dir_required")

    def test_redis_restart_reconnects_and_a_new_job_runs(self):
        self.wait_connected()
        before = metric(self.a, "cryomamba_redis_connects_total")
        port = self.redis.port
        self.redis.kill()
        for s in (self.a, self.w):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 0, what="down seen")
        r = self.a.request("POST", "/v1/jobs", body=FAST)
        harness.assert_error(self, r, 503, "redis_unavailable", retryable=True)
        self.redis.start(port=port)
        self.wait_connected()
        self.assertGreater(metric(self.a, "cryomamba_redis_connects_total"), before)
        jid = self.run_job()
        self.assertEqual(self.b.wait_state(jid, "completed", timeout=30)["state"], "completed")


SRV_STREAM = "cm:jobs"


class RoleFlagsTest(unittest.TestCase):
    def refused(self, args, needle):
        p = subprocess.run([harness.SERVER_BIN, "--port", "0"] + args,
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(needle, p.stderr.decode())

    def test_bad_combinations_are_refused_at_start(self):
        self.refused(["--role", "gateway"], "--role gateway needs --redis")
        self.refused(["--role", "worker"], "--role worker needs --redis")
        self.refused(["--redis", "redis://127.0.0.1:1"], "are for --role gateway|worker")
        self.refused(["--shared-dir", "/tmp"], "are for --role gateway|worker")
        self.refused(["--role", "boss"], "invalid value 'boss' for --role")
        self.refused(["--role", "gateway", "--redis", "http://x"], "expected redis://")
        self.refused(["--role", "gateway", "--redis", "redis://h:99999"], "bad port")
        self.refused(["--role", "gateway", "--redis", "redis://127.0.0.1/16"], "0..15")


if __name__ == "__main__":
    harness.main()
