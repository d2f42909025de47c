"""test_cluster_encodings.py: raw, zstd (docs/protocol.md §10) and chunks
(§11) subscribers on cluster gateways (docs/operations.md "Cluster"). A
private redis-server, two gateways and one worker on loopback, as
test_cluster.py. Workers publish only the JSON + base64 preview; a gateway
with binary subscribers decodes (and compresses) it on its pool, so its raw
and zstd frames must carry the voxels of the base64 preview of the same
seq with the same envelope; a late joiner gets the stored latest preview
in its own encoding."""

import asyncio
import base64
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import numpy as np  # noqa: E402
import websockets.client  # noqa: E402
import websockets.exceptions  # noqa: E402
from chunk_client import ChunkClient, follow, max_downsample  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_auth_encodings import zstd_decompress  # noqa: E402
from test_cluster import TERMINAL, metric, poll  # noqa: E402

LONGER = {"volume": {"shape": [33, 40, 50]},
          "params": {"engine": "sim", "duration_s": 2.5, "preview_hz": 8,
                     "pattern": "blobs", "preview_scale": 2}}
FAST = {"volume": {"shape": [20, 24, 28]},
        "params": {"engine": "sim", "duration_s": 0.6, "preview_hz": 10}}
# Chunked: scale-1 previews, so the final base64 preview is the whole mask
# to compare with; the worker runs with --redis-chunk-message-bytes 65536,
# so the random pattern's passes go out in several batches.
CHUNKY = {"volume": {"shape": [64, 80, 72]},
          "params": {"engine": "sim", "duration_s": 2.5, "preview_hz": 8,
                     "pattern": "blobs", "preview_scale": 1, "seed": 3}}
RANDOM = {"volume": {"shape": [40, 64, 66]},
          "params": {"engine": "sim", "duration_s": 1.2, "preview_hz": 8,
                     "pattern": "random", "preview_scale": 1}}
WAIT = 60 * harness.SPEED_SCALE


class Recorder(ChunkClient):
    """A ChunkClient that also lists the versions of the chunks it got."""

    def __init__(self):
        super().__init__()
        self.got = []

    def _chunk(self, raw):
        self.got.append(int.from_bytes(raw[20:24], "big"))
        super()._chunk(raw)


async def watch(server, jid, query="?encoding=chunks&scale=1", client=None, **kw):
    client = client or Recorder()
    async with websockets.client.connect(server.ws_url(jid) + query, max_size=None,
                                         open_timeout=harness.EV,
                                         ping_interval=None) as ws:
        await asyncio.wait_for(follow(ws, client, **kw), WAIT)
    return client


async def stream(server, jid, query="", subprotocols=None, timeout=30):
    """Every message up to the terminal one: [(kind, envelope, payload|raw)],
    kind 'text' (payload = the raw text) or 'binary'."""
    ws = await websockets.client.connect(
        server.ws_url(jid) + query, max_size=2 ** 28, open_timeout=harness.EV,
        subprotocols=subprotocols, ping_interval=None)
    got = []
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            if isinstance(raw, bytes):
                head_len = int.from_bytes(raw[:4], "big")
                got.append(("binary", json.loads(raw[4:4 + head_len]), raw[4 + head_len:]))
                continue
            msg = json.loads(raw)
            got.append(("text", msg, raw))
            if msg["type"] in TERMINAL:
                return got
    finally:
        await ws.close()


def previews(tc, got):
    """{seq: (encoding, voxels, envelope without payload fields)}"""
    out = {}
    for kind, env, body in got:
        if env["type"] != "preview":
            continue
        if kind == "binary":
            tc.assertEqual(env["data"]["payload_bytes"], len(body))
            tc.assertNotIn("payload", env["data"])
            enc = env["data"]["encoding"]
            n = env["data"]["shape"][0] * env["data"]["shape"][1] * env["data"]["shape"][2]
            vox = zstd_decompress(body, n) if enc == "zstd" else body
        else:
            enc = "base64"
            vox = base64.b64decode(env["data"]["payload"])
        d = {k: v for k, v in env["data"].items()
             if k not in ("payload", "payload_bytes", "encoding")}
        out[env["seq"]] = (enc, vox, (env["job_id"], env["timestamp"], json.dumps(d)))
    return out


class ClusterEncodingsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis().start()
        args = ["--redis", cls.redis.url]
        cls.a = harness.Server(["--role", "gateway"] + args).start()
        # b reads chunk tables 2 chunks per HSCAN page: every fill of b's
        # (late joiners, refills after a restart, takeovers) spans pages.
        cls.b = harness.Server(["--role", "gateway", "--redis-chunk-read-count", "2"]
                               + args).start()
        cls.w = harness.Server(["--role", "worker", "--redis-chunk-message-bytes",
                                "65536"] + args).start()

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("CM_TEST_LOGS"):
            for s in (cls.a, cls.b, cls.w):
                sys.stderr.write("---- %d\n%s\n" % (s.port, s.stderr_tail(6000)))
        try:
            for s in (cls.a, cls.b, cls.w):
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in (cls.a, cls.b, cls.w):
                s.cleanup()
            cls.redis.stop()

    def wait_connected(self):
        for s in (self.a, self.b, self.w):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1,
                 what="redis connected on %d" % s.port)
        for s in (self.a, self.b):
            poll(lambda: metric(s, "cryomamba_redis_sub_connected") == 1, what="sub connected")
        poll(lambda: metric(self.w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")

    def check_order(self, got, jid):
        self.assertEqual(got[0][1]["type"], "connected")
        self.assertEqual(got[0][1]["job_id"], jid)
        seqs = [env["seq"] for _, env, _ in got[1:]]
        self.assertEqual(seqs, sorted(set(seqs)), "duplicate or older seq")
        self.assertIn(got[-1][1]["type"], TERMINAL)

    def test_raw_and_zstd_on_two_gateways_equal_base64(self):
        self.wait_connected()
        before = {s: (metric(s, "cryomamba_cluster_encodes_total"),
                      metric(s, "cryomamba_cluster_encode_microseconds_total"))
                  for s in (self.a, self.b)}
        jid = self.a.create_job(LONGER)["job_id"]

        async def all_of_them():
            return await asyncio.gather(
                stream(self.a, jid), stream(self.a, jid, "?encoding=raw"),
                stream(self.b, jid, subprotocols=["cryomamba.v1.zstd"]),
                stream(self.b, jid, "?encoding=raw"), stream(self.a, jid, "?encoding=zstd"))
        b64_a, raw_a, zst_b, raw_b, zst_a = asyncio.run(all_of_them())
        term = self.redis.cli("GET", "cm:term:" + jid)
        last = json.loads(self.redis.cli("GET", "cm:prev:" + jid))
        ref = previews(self, b64_a)
        self.assertGreaterEqual(len(ref), 3, sorted(ref))
        for name, got, enc in (("raw A", raw_a, "raw"), ("zstd B", zst_b, "zstd"),
                               ("raw B", raw_b, "raw"), ("zstd A", zst_a, "zstd")):
            self.check_order(got, jid)
            self.assertEqual(got[-1][2], term, name + ": terminal differs")
            mine = previews(self, got)
            common = set(mine) & set(ref)
            self.assertGreaterEqual(len(common), 3, (name, sorted(mine), sorted(ref)))
            for seq in common:
                self.assertEqual(mine[seq][0], enc, (name, seq))
                self.assertEqual(mine[seq][1], ref[seq][1], "%s: voxels of %d" % (name, seq))
                self.assertEqual(mine[seq][2], ref[seq][2], "%s: envelope of %d" % (name, seq))
            # every one got the worker's final preview
            self.assertIn(last["seq"], mine, name)
            self.assertEqual(mine[last["seq"]][1], base64.b64decode(last["data"]["payload"]))
            for kind, env, _ in got:
                if env["type"] == "preview":
                    self.assertEqual(kind, "binary", name + ": a text preview")
        # each gateway decoded each preview once, for all its binary subscribers
        for s, (n0, us0) in before.items():
            n = metric(s, "cryomamba_cluster_encodes_total") - n0
            self.assertGreaterEqual(n, 3)
            self.assertLessEqual(n, len(ref) + 2)  # + late joiners' fills (raw, zstd)
            self.assertGreater(metric(s, "cryomamba_cluster_encode_microseconds_total"), us0)
            self.assertEqual(metric(s, "cryomamba_cluster_encode_errors_total"), 0)

    def test_late_joiners_get_the_latest_preview_in_their_encoding(self):
        self.wait_connected()
        jid = self.a.create_job(FAST)["job_id"]
        self.b.wait_state(jid, "completed", timeout=30)
        term = poll(lambda: self.redis.cli("GET", "cm:term:" + jid), what="terminal stored")
        last = json.loads(self.redis.cli("GET", "cm:prev:" + jid))
        voxels = base64.b64decode(last["data"]["payload"])
        # B has never seen this job; A's mirror is made by the first of these
        for server in (self.b, self.a, self.b):
            for q, enc in (("?encoding=zstd", "zstd"), ("?encoding=raw", "raw"), ("", "base64")):
                got = asyncio.run(stream(server, jid, q))
                self.assertEqual([env["type"] for _, env, _ in got],
                                 ["connected", "preview", "completed"], (q, got[:3]))
                self.assertEqual(got[0][1]["data"]["state"], "completed")
                p = previews(self, got)
                self.assertEqual(list(p), [last["seq"]])
                self.assertEqual(p[last["seq"]][0], enc)
                self.assertEqual(p[last["seq"]][1], voxels)
                self.assertEqual(got[-1][2], term)

    def test_a_late_binary_joiner_mid_job_gets_a_preview_at_once(self):
        """A gateway whose only subscriber is base64 holds the latest preview
        in base64; a raw subscriber joining gets it (encoded for it), then
        live previews, in seq order."""
        self.wait_connected()
        jid = self.a.create_job(LONGER)["job_id"]

        async def run():
            ws = await harness.ws_connect(self.b, jid)
            try:
                await harness.recv_type(ws, "preview", 20)
                got = await stream(self.b, jid, "?encoding=raw")
            finally:
                await ws.close()
            return got
        got = asyncio.run(run())
        self.check_order(got, jid)
        self.assertEqual(got[1][1]["type"], "preview")
        self.assertEqual(got[1][0], "binary")
        self.assertGreaterEqual(sum(1 for _, e, _ in got if e["type"] == "preview"), 2)

    def test_binary_and_chunks_subscribers_churning_leave_the_gateway_sound(self):
        """Subscribers that vanish (no closing handshake) while an encode or
        a table read is in flight: the mirror may go meanwhile; the next
        ones still get everything in order (ASan runs catch the rest)."""
        self.wait_connected()
        body = json.loads(json.dumps(LONGER))
        body["volume"]["shape"] = [64, 96, 96]
        body["params"]["preview_scale"] = 1
        jid = self.a.create_job(body)["job_id"]

        async def churn():
            for i in range(6):
                q = ("?encoding=raw", "?encoding=zstd", "?encoding=chunks")[i % 3]
                ws = await websockets.client.connect(self.a.ws_url(jid) + q, max_size=None,
                                                     open_timeout=harness.EV)
                await asyncio.wait_for(ws.recv(), harness.EV)  # connected
                ws.transport.abort()
            return await asyncio.gather(stream(self.a, jid, "?encoding=zstd"),
                                        watch(self.a, jid))
        got, c = asyncio.run(churn())
        self.check_order(got, jid)
        full = self.final_mask(jid)
        self.assert_level(c, full, 0)
        last = previews(self, got)
        self.assertEqual(last[max(last)][1], full.tobytes())
        self.a.assert_healthy()

    # ---- chunks (§11) ----

    def final_mask(self, jid):
        """The job's final mask: its last base64 preview at scale 1."""
        self.b.wait_state(jid, "completed", timeout=WAIT)
        prev = json.loads(poll(lambda: self.redis.cli("GET", "cm:term:" + jid) and
                               self.redis.cli("GET", "cm:prev:" + jid), what="final preview"))
        self.assertEqual(prev["data"]["scale"], [1, 1, 1])
        shape = prev["data"]["shape"]
        return np.frombuffer(base64.b64decode(prev["data"]["payload"]),
                             dtype=np.uint8).reshape(shape)

    def assert_level(self, client, full, lv):
        want = max_downsample(full, lv)
        got = client.mask(lv)
        self.assertEqual(got.shape, want.shape)
        self.assertEqual(int((got != want).sum()), 0, "level %d differs" % lv)

    def test_chunks_on_two_gateways_reconstruct_the_final_mask(self):
        self.wait_connected()
        for body in (CHUNKY, RANDOM):
            jid = self.a.create_job(body)["job_id"]

            async def both():
                return await asyncio.gather(watch(self.a, jid),
                                            watch(self.b, jid, "?encoding=chunks&scale=2"),
                                            watch(self.b, jid))
            on_a, on_b2, on_b = asyncio.run(both())
            full = self.final_mask(jid)
            self.assertGreater(int((full > 0).sum()), 0)
            epoch = self.redis.cli("HGET", "cm:chunkmeta:" + jid, "epoch")
            self.assertRegex(epoch, "^[0-9a-f]{16}$")
            for c, lv in ((on_a, 0), (on_b2, 1), (on_b, 0)):
                self.assertEqual(c.terminal["type"], "completed")
                self.assertEqual(c.terminal["seq"], json.loads(
                    self.redis.cli("GET", "cm:term:" + jid))["seq"])
                self.assertTrue(c.deltas[0]["keyframe"])
                self.assertTrue(c.deltas[-1]["complete"])
                # the worker's epoch, the same on every gateway
                self.assertEqual(c.connected["chunks"]["epoch"], epoch)
                self.assertEqual({d["epoch"] for d in c.deltas}, {epoch})
                self.assert_level(c, full, lv)
            self.assertGreater(len(on_a.deltas), 2)
        for s in (self.a, self.b):
            self.assertGreater(metric(s, "cryomamba_cluster_chunk_batches_total"), 2)
        # the random pattern's passes did not fit one 64 KiB message
        self.assertGreater(int(self.redis.cli("HLEN", "cm:chunks:" + jid)), 8)

    def test_chunks_late_joiner_after_completion_gets_a_keyframe_of_the_mask(self):
        self.wait_connected()
        jid = self.a.create_job(CHUNKY)["job_id"]
        full = self.final_mask(jid)
        pages = metric(self.b, "cryomamba_cluster_chunk_pages_total")
        for server in (self.b, self.a):  # neither has watched it
            c = asyncio.run(watch(server, jid))
            self.assertTrue(c.deltas[0]["keyframe"])
            self.assertEqual(c.terminal["type"], "completed")
            self.assert_level(c, full, 0)
            c = asyncio.run(watch(server, jid, "?encoding=chunks&scale=4"))
            self.assert_level(c, full, 2)
        # b's table came in pages of 2 chunks (a's in one or a few of 512).
        chunks = int(self.redis.cli("HLEN", "cm:chunks:" + jid))
        self.assertGreater(chunks, 8)
        got = metric(self.b, "cryomamba_cluster_chunk_pages_total") - pages
        # COUNT is a hint: a page may hold a few more; never the whole table.
        self.assertGreaterEqual(got, chunks // 4, "pages %d for %d chunks" % (got, chunks))

    def test_chunks_resume_with_since_on_the_other_gateway(self):
        self.wait_connected()
        jid = self.a.create_job(CHUNKY)["job_id"]
        c = Recorder()

        def enough(t, cl):
            return cl.last_complete is not None and len(cl.deltas) >= 3
        asyncio.run(watch(self.a, jid, client=c, until_terminal=False, on_message=enough))
        seq, epoch = c.last_complete
        c.got = []
        asyncio.run(watch(self.b, jid, "?encoding=chunks&scale=1&since=%d&epoch=%s"
                          % (seq, epoch), client=c))
        resumed = [d for d in c.deltas if d["base"] == seq]
        self.assertTrue(resumed, "no delta based on the since seq")
        self.assertFalse(resumed[0]["keyframe"])
        self.assertTrue(c.got, "nothing changed after the since seq?")
        self.assertGreater(min(c.got), seq, "a chunk the client already had")
        self.assert_level(c, self.final_mask(jid), 0)
        # a wrong epoch on A: a keyframe
        c3 = asyncio.run(watch(self.a, jid, "?encoding=chunks&scale=1&since=%d"
                               "&epoch=0000000000000000" % seq))
        self.assertTrue(c3.deltas[0]["keyframe"])
        self.assert_level(c3, self.final_mask(jid), 0)

    def test_chunks_converge_across_a_redis_restart_mid_job(self):
        self.wait_connected()
        body = json.loads(json.dumps(CHUNKY))
        body["params"]["duration_s"] = 4.0
        jid = self.a.create_job(body)["job_id"]
        port = self.redis.port

        async def run():
            c = Recorder()
            query = "?encoding=chunks&scale=1"
            for attempt in range(6):
                try:
                    def first(t, cl):
                        return cl.last_complete is not None
                    if attempt == 0:
                        await watch(self.a, jid, query, client=c, until_terminal=False,
                                    on_message=first)
                        self.redis.kill()
                        self.redis.start(port=port)
                        seq, epoch = c.last_complete
                        query = "?encoding=chunks&scale=1&since=%d&epoch=%s" % (seq, epoch)
                        continue
                    await watch(self.b if attempt % 2 else self.a, jid, query, client=c)
                    return c
                except (websockets.exceptions.ConnectionClosed, OSError) as e:
                    code = getattr(getattr(e, "rcvd", None), "code", None)
                    self.assertIn(code, (1011, 1001, None))
                    if c.last_complete:
                        query = "?encoding=chunks&scale=1&since=%d&epoch=%s" % c.last_complete
                    # 1011 is "Redis unavailable" (protocol.md): a client
                    # retries once the gateways are back, not in a tight
                    # loop that outruns their reconnect backoff
                    await asyncio.to_thread(self.wait_connected)
            raise AssertionError("no terminal message after reconnects")

        async def live():
            # one subscriber on B stays connected across the restart
            c = Recorder()
            await watch(self.b, jid, client=c)
            return c
        c_live, c = None, None

        async def both():
            return await asyncio.gather(live(), run(), return_exceptions=True)
        c_live, c = asyncio.run(both())
        for r in (c_live, c):
            if isinstance(r, websockets.exceptions.ConnectionClosed):
                continue  # closed by the gateway during the outage: fine
            if isinstance(r, BaseException):
                raise r
        full = self.final_mask(jid)
        self.assert_level(c, full, 0)
        if not isinstance(c_live, BaseException):
            self.assertEqual(c_live.terminal["type"], "completed")
            self.assert_level(c_live, full, 0)
        self.wait_connected()

    def test_a_running_job_is_found_again_after_redis_restarted_empty(self):
        """This Redis keeps nothing across a restart (no AOF): the worker's
        first frame after its reconnect stores the running job's record and
        index entry again, so a gateway finds it before it ends (not only
        from its terminal), and a new subscriber follows it to the end."""
        self.wait_connected()
        body = json.loads(json.dumps(CHUNKY))
        body["params"]["duration_s"] = 120.0  # ended by the cancel below
        jid = self.a.create_job(body)["job_id"]
        self.b.wait_state(jid, "running", timeout=WAIT)
        self.redis.kill()
        self.redis.start(port=self.redis.port)
        self.assertEqual(self.redis.cli("EXISTS", "cm:job:" + jid), "0")
        self.wait_connected()
        poll(lambda: self.redis.cli("HGET", "cm:job:" + jid, "record"),
             timeout=WAIT, what="the record stored again")
        self.assertEqual(self.a.get("/v1/jobs/" + jid).json["state"], "running")
        self.assertNotEqual(self.redis.cli("ZSCORE", "cm:jobs:index", jid), "")
        listed = self.b.get("/v1/jobs?limit=100").json
        self.assertIn(jid, [j["job_id"] for j in listed["jobs"]])
        c = Recorder()

        def keyframe(t, cl):
            return cl.last_complete is not None
        asyncio.run(watch(self.b, jid, client=c, until_terminal=False, on_message=keyframe))
        self.assertTrue(c.deltas[0]["keyframe"])
        r = self.a.request("DELETE", "/v1/jobs/" + jid)
        self.assertEqual(r.status, 202, r.body)
        c = asyncio.run(watch(self.a, jid))
        self.assertEqual(c.terminal["type"], "cancelled")


class ChunkBoundTest(unittest.TestCase):
    def test_a_chunk_message_bound_too_small_or_too_large_is_refused(self):
        for v in ("65535", "0", "268435457", "-1", "4MiB"):
            p = subprocess.run([harness.SERVER_BIN, "--port", "0", "--role", "worker",
                                "--redis", "redis://127.0.0.1:1",
                                "--redis-chunk-message-bytes", v],
                               capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 2, (v, p.stderr))
            self.assertIn("--redis-chunk-message-bytes", p.stderr.decode())

    def test_a_chunk_read_count_out_of_range_is_refused(self):
        for v in ("0", "65537", "-1", "many"):
            p = subprocess.run([harness.SERVER_BIN, "--port", "0", "--role", "gateway",
                                "--redis", "redis://127.0.0.1:1",
                                "--redis-chunk-read-count", v],
                               capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 2, (v, p.stderr))
            self.assertIn("--redis-chunk-read-count", p.stderr.decode())


if __name__ == "__main__":
    harness.main()
