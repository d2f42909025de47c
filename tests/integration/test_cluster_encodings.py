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
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import websockets.client  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_auth_encodings import zstd_decompress  # noqa: E402
from test_cluster import TERMINAL, metric, poll  # noqa: E402

LONGER = {"volume": {"shape": [33, 40, 50]},
          "params": {"engine": "sim", "duration_s": 2.5, "preview_hz": 8,
                     "pattern": "blobs", "preview_scale": 2}}
FAST = {"volume": {"shape": [20, 24, 28]},
        "params": {"engine": "sim", "duration_s": 0.6, "preview_hz": 10}}


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


if __name__ == "__main__":
    harness.main()
