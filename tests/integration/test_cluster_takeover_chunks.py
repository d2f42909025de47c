"""test_cluster_takeover_chunks.py: chunks subscribers (docs/protocol.md
§11) across a takeover (docs/operations.md "Cluster"). Two gateways, two
workers with a 1 s lease. A chunks subscriber stays on a gateway while the
job's worker is killed with SIGKILL mid-job: when the new attempt's table
reaches the gateway, the subscriber is closed 1012, reconnects with its
since/epoch (the old epoch: a keyframe) and reconstructs exactly the
completed job's final mask (its last base64 preview at scale 1). A worker
frozen past its lease (SIGSTOP) and resumed writes nothing of its old table
into cm:chunks/cm:chunkmeta (fenced): a late joiner's reconstruction from
Redis equals the mask, and the stored epoch is the new attempt's."""

import asyncio
import base64
import json
import os
import signal
import sys
import unittest

import numpy as np
import websockets
import websockets.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from chunk_client import ChunkClient, follow, max_downsample  # noqa: E402
from test_cluster import metric, poll  # noqa: E402
from test_cluster_takeover import Cluster  # noqa: E402

WAIT = 60 * harness.SPEED_SCALE
# scale-1 previews: the final base64 preview is the whole mask
JOB = {"volume": {"shape": [64, 80, 72]},
       "params": {"engine": "sim", "duration_s": 4.0, "preview_hz": 8,
                  "pattern": "blobs", "preview_scale": 1, "seed": 5}}
CHUNK_ARGS = ("--redis-chunk-message-bytes", "65536")


async def follow_reconnecting(server, jid, client, closes, on_message=None,
                              query="?encoding=chunks&scale=1"):
    """Follows the job until its terminal message, reconnecting (with the
    client's since/epoch) when the gateway closes; `closes` gets each close
    code. on_message(type, client) runs for every message."""
    q = query
    for _ in range(8):
        async with websockets.client.connect(server.ws_url(jid) + q, max_size=None,
                                             open_timeout=harness.EV,
                                             ping_interval=None) as ws:
            try:
                await asyncio.wait_for(follow(ws, client, on_message=on_message), WAIT)
            except websockets.exceptions.ConnectionClosed:
                pass
            if client.terminal is not None:
                return client
            await ws.wait_closed()
            closes.append(ws.close_code)
        if client.last_complete is not None:
            q = query + "&since=%d&epoch=%s" % client.last_complete
    raise AssertionError("no terminal message after reconnects: %r" % closes)


class TakeoverChunksTest(unittest.TestCase):
    def cluster(self):
        c = Cluster(CHUNK_ARGS, 2)
        self.addCleanup(c.stop)
        return c

    def final_mask(self, c, jid):
        c.b.wait_state(jid, "completed", timeout=WAIT)
        prev = json.loads(poll(lambda: c.redis.cli("GET", "cm:term:" + jid) and
                               c.redis.cli("GET", "cm:prev:" + jid), what="final preview"))
        self.assertEqual(prev["data"]["scale"], [1, 1, 1])
        return np.frombuffer(base64.b64decode(prev["data"]["payload"]),
                             dtype=np.uint8).reshape(prev["data"]["shape"])

    def assert_level(self, client, full, lv):
        want = max_downsample(full, lv)
        got = client.mask(lv)
        self.assertEqual(got.shape, want.shape)
        self.assertEqual(int((got != want).sum()), 0, "level %d differs" % lv)

    def late_joiner(self, c, server, jid):
        cl = ChunkClient()

        async def run():
            async with websockets.client.connect(
                    server.ws_url(jid) + "?encoding=chunks&scale=1", max_size=None,
                    open_timeout=harness.EV, ping_interval=None) as ws:
                await asyncio.wait_for(follow(ws, cl), WAIT)
        asyncio.run(run())
        return cl

    def test_a_subscriber_staying_across_a_kill9_gets_the_final_mask(self):
        c = self.cluster()
        jid = c.a.create_job(JOB)["job_id"]
        state = {"killed": None}

        def kill_once(t, cl):
            # mid-job: after a few complete deltas of the first attempt
            if state["killed"] is None and cl.last_complete is not None and \
                    len(cl.deltas) >= 3:
                w, attempt = c.owner_of(jid)
                if w is not None and attempt == 1:
                    state["killed"] = w
                    state["epoch1"] = cl.last_complete[1]
                    c.kill9(w)
            return False
        on_a, on_b = ChunkClient(), ChunkClient()
        closes_a, closes_b = [], []

        async def both():
            return await asyncio.gather(
                follow_reconnecting(c.a, jid, on_a, closes_a, kill_once),
                follow_reconnecting(c.b, jid, on_b, closes_b,
                                    query="?encoding=chunks&scale=2"))
        asyncio.run(both())
        self.assertIsNotNone(state["killed"], "the worker was not killed mid-job")
        full = self.final_mask(c, jid)
        self.assertGreater(int((full > 0).sum()), 0)
        _, attempt = c.owner_of(jid)
        self.assertEqual(attempt, 2)
        epoch = c.redis.cli("HGET", "cm:chunkmeta:" + jid, "epoch")
        self.assertTrue(epoch.startswith("00000002"), epoch)
        self.assertNotEqual(epoch, state["epoch1"])
        for cl, closes, lv in ((on_a, closes_a, 0), (on_b, closes_b, 1)):
            self.assertEqual(cl.terminal["type"], "completed")
            # closed once, for the new table, then a keyframe of it
            self.assertEqual(closes, [1012])
            self.assertEqual(cl.last_complete[1], epoch)
            last_key = [d for d in cl.deltas if d["keyframe"]][-1]
            self.assertEqual(last_key["epoch"], epoch)
            self.assert_level(cl, full, lv)
        for g in (c.a, c.b):
            self.assertEqual(metric(g, "cryomamba_cluster_chunk_tables_replaced_total"), 1)
        # a late joiner reads the new attempt's table alone from Redis
        self.assert_level(self.late_joiner(c, c.b, jid), full, 0)
        poll(lambda: c.pending() == 0, what="no pending entry")

    def test_a_stalled_worker_resumed_does_not_write_its_old_table(self):
        c = self.cluster()
        jid = c.a.create_job(JOB)["job_id"]
        state = {}

        def freeze_once(t, cl):
            if "frozen" not in state and cl.last_complete is not None and \
                    len(cl.deltas) >= 3:
                w, attempt = c.owner_of(jid)
                if w is not None and attempt == 1:
                    state["frozen"] = w
                    state["epoch1"] = cl.last_complete[1]
                    os.kill(w.proc.pid, signal.SIGSTOP)
            elif "frozen" in state and "resumed" not in state and \
                    c.owner_of(jid)[1] == 2 and \
                    c.redis.cli("HGET", "cm:chunkmeta:" + jid, "epoch") not in ("", state["epoch1"]):
                # the new attempt's table is in Redis: the old worker resumes
                # with its old table's changes still to send
                state["resumed"] = True
                os.kill(state["frozen"].proc.pid, signal.SIGCONT)
            return False
        cl, closes = ChunkClient(), []
        try:
            asyncio.run(follow_reconnecting(c.a, jid, cl, closes, freeze_once))
        finally:
            if "frozen" in state and "resumed" not in state:
                os.kill(state["frozen"].proc.pid, signal.SIGCONT)
        self.assertIn("resumed", state)
        frozen = state["frozen"]
        poll(lambda: metric(frozen, "cryomamba_cluster_fenced_total") == 1,
             what="the resumed worker fenced")
        full = self.final_mask(c, jid)
        self.assertEqual(cl.terminal["type"], "completed")
        self.assert_level(cl, full, 0)
        epoch = c.redis.cli("HGET", "cm:chunkmeta:" + jid, "epoch")
        self.assertTrue(epoch.startswith("00000002"), epoch)
        # cm:chunks holds the new attempt's table only: a late joiner on each
        # gateway reconstructs the mask
        for g in (c.b, c.a):
            late = self.late_joiner(c, g, jid)
            self.assertEqual(late.last_complete[1], epoch)
            self.assert_level(late, full, 0)
        poll(lambda: c.pending() == 0, what="no pending entry")


if __name__ == "__main__":
    harness.main()
