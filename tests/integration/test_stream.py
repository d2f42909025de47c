#!/usr/bin/python3
"""WebSocket streaming (docs/protocol.md §5), the story's acceptance
criteria: connect on /ws/jobs/{id}; previews at the configured rate (5 Hz,
and 1 Hz by default); JSON envelope + base64 payload decoding to prod(shape)
bytes; label sets of the two patterns; the blobs mask only grows;
preview_scale; seq rules; ping/pong; late joiners; no extension
negotiated."""

import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from harness import (EV, SPEED_SCALE, ServerTestCase, check_envelope,  # noqa: E402
                     decode_preview,
                     label_set, main, recv_msg, recv_type, recv_until, ws_connect)

TERMINAL = ("completed", "cancelled", "error")


async def collect_for(ws, seconds):
    """Every message received during `seconds`: [(msg, raw, t_monotonic)]."""
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        left = end - loop.time()
        if left <= 0:
            return out
        try:
            msg, raw = await recv_msg(ws, left)
        except asyncio.TimeoutError:
            return out
        out.append((msg, raw, time.monotonic()))


def parse_ts(ts):
    from datetime import datetime, timezone
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


class StreamTest(ServerTestCase):
    SERVER_ARGS = ("--max-running", "8")

    async def test_connected_message(self):
        job = self.make_job({"volume": {"shape": [12, 34, 56], "voxel_size": [3, 2, 1]},
                             "params": {"preview_hz": 2, "preview_scale": 3, "duration_s": 100,
                                        "seed": 9, "pattern": "blobs"}})
        ws = await ws_connect(self.server, job["job_id"])
        try:
            self.assertIsNone(ws.response_headers.get("Sec-WebSocket-Extensions"),
                              "server negotiated an extension (permessage-deflate?)")
            msg, _ = await recv_msg(ws)
            check_envelope(self, msg, job["job_id"])
            self.assertEqual(msg["type"], "connected")
            self.assertEqual(msg["seq"], 0)
            d = msg["data"]
            for k in ("state", "progress", "last_seq", "volume", "preview_shape", "params"):
                self.assertIn(k, d)
            self.assertIn(d["state"], ("queued", "running"))
            self.assertTrue(0 <= d["progress"] <= 1)
            self.assertIsInstance(d["last_seq"], int)
            self.assertEqual(d["volume"]["shape"], [12, 34, 56])
            self.assertEqual(d["volume"]["voxel_size"], [3, 2, 1])
            self.assertEqual(d["preview_shape"], [4, 12, 19])
            self.assertEqual(d["params"], {"preview_hz": 2, "preview_scale": 3,
                                           "duration_s": 100, "seed": 9, "pattern": "blobs"})
        finally:
            await ws.close()

    async def test_rate_5hz_and_format(self):
        shape = [16, 20, 24]
        job = self.make_job({"volume": {"shape": shape},
                             "params": {"preview_hz": 5, "duration_s": 120, "seed": 4}})
        jid = job["job_id"]
        ws = await ws_connect(self.server, jid)
        try:
            await recv_type(ws, "preview", timeout=EV)
            msgs = await collect_for(ws, 3.0)
        finally:
            await ws.close()
        for m, _, _ in msgs:
            check_envelope(self, m, jid)
        previews = [(m, t) for m, _, t in msgs if m["type"] == "preview"]
        progress = [m for m, _, _ in msgs if m["type"] == "progress"]
        n = len(previews)
        # 3 s at 5 Hz = 15 previews; generous bounds (what this reader sees
        # also depends on how fast it is scheduled: wider on a slow build)
        self.assertTrue(11 / SPEED_SCALE <= n <= 19, "%d previews in 3 s at 5 Hz" % n)
        gaps = [b[1] - a[1] for a, b in zip(previews, previews[1:])]
        med = statistics.median(gaps)
        self.assertTrue(0.15 / SPEED_SCALE <= med <= 0.25 * SPEED_SCALE,
                        "median preview interval %.3f s" % med)
        self.assertLess(max(gaps), 0.6 * SPEED_SCALE, "a preview interval of %.3f s" % max(gaps))
        # server timestamps follow absolute deadlines: mean interval ~ 0.2 s
        ts = [parse_ts(m["timestamp"]) for m, _ in previews]
        mean = (ts[-1] - ts[0]) / (len(ts) - 1)
        self.assertAlmostEqual(mean, 0.2, delta=0.02)
        # one progress per period (may coalesce, never more than one per period)
        self.assertTrue(n // 2 <= len(progress) <= n + 2, "%d progress vs %d previews"
                        % (len(progress), n))
        prev = None
        for p in progress:
            d = p["data"]
            for k in ("progress", "state", "message", "eta_s", "elapsed_s", "previews_sent"):
                self.assertIn(k, d)
            self.assertEqual(d["state"], "running")
            self.assertTrue(0 <= d["progress"] <= 1)
            self.assertIsInstance(d["message"], str)
            self.assertTrue(d["eta_s"] is None or d["eta_s"] >= 0)
            self.assertGreaterEqual(d["elapsed_s"], 0)
            if prev is not None:
                self.assertGreaterEqual(d["progress"], prev["progress"])
                self.assertGreaterEqual(d["previews_sent"], prev["previews_sent"])
            prev = d
        # elapsed/progress agree with a 120 s duration
        self.assertAlmostEqual(prev["progress"], prev["elapsed_s"] / 120.0, delta=0.02)
        # format: exact data keys, base64 of prod(shape), labels {0,1}
        arrays = []
        for m, _ in previews:
            self.assertEqual(set(m["data"].keys()), {"scale", "shape", "dtype", "payload"})
            arr, _ = decode_preview(self, m, shape, 1)
            self.assertLessEqual(label_set(arr), {0, 1})
            arrays.append(arr)
        self.assertEqual(label_set(arrays[-1]), {0, 1})
        self.assertTrue(any(not np.array_equal(a, b) for a, b in zip(arrays, arrays[1:])),
                        "random previews never change")
        self.assertGreater(self.server.job(jid)["previews_sent"], n)

    async def test_default_rate_1hz(self):
        job = self.make_job({})  # every default: 64^3, 1 Hz, random, 30 s
        ws = await ws_connect(self.server, job["job_id"])
        try:
            first = await recv_type(ws, "preview", timeout=EV)
            t0 = time.monotonic()
            arr, _ = decode_preview(self, first, [64, 64, 64], 1)
            self.assertEqual(arr.size, 64 ** 3)
            msgs = await collect_for(ws, 4.5)
        finally:
            await ws.close()
        times = [t0] + [t for m, _, t in msgs if m["type"] == "preview"]
        n = len(times) - 1
        self.assertTrue(3 <= n <= 6, "%d previews in 4.5 s at the default 1 Hz" % n)
        lo, hi = 0.6 / SPEED_SCALE, 1.5 * SPEED_SCALE
        for a, b in zip(times, times[1:]):
            self.assertTrue(lo <= b - a <= hi, "preview interval %.3f s at 1 Hz" % (b - a))
        # The server's own clock keeps the rate whatever the reader's lag.
        ts = [parse_ts(m["timestamp"]) for m, _, _ in msgs if m["type"] == "preview"]
        for a, b in zip(ts, ts[1:]):
            self.assertAlmostEqual(b - a, 1.0, delta=0.1)

    async def test_scale2_shape(self):
        job = self.make_job({"volume": {"shape": [33, 64, 65]},
                             "params": {"preview_hz": 5, "preview_scale": 2, "duration_s": 60}})
        self.assertEqual(job["preview_shape"], [17, 32, 33])
        ws = await ws_connect(self.server, job["job_id"])
        try:
            conn, _ = await recv_msg(ws)
            self.assertEqual(conn["data"]["preview_shape"], [17, 32, 33])
            pv = await recv_type(ws, "preview")
        finally:
            await ws.close()
        self.assertEqual(pv["data"]["shape"], [17, 32, 33])
        self.assertEqual(pv["data"]["scale"], [2, 2, 2])
        arr, _ = decode_preview(self, pv, [33, 64, 65], 2)
        self.assertEqual(arr.nbytes, 17 * 32 * 33)

    async def test_blobs_grow_to_completion(self):
        shape = [64, 64, 64]
        job = self.make_job({"volume": {"shape": shape},
                             "params": {"preview_hz": 10, "duration_s": 3, "seed": 1,
                                        "pattern": "blobs"}})
        ws = await ws_connect(self.server, job["job_id"])
        msgs = []
        try:
            await recv_until(ws, lambda m: m["type"] in TERMINAL, timeout=60, collect=msgs)
        finally:
            await ws.close()
        types = [m["type"] for m, _, _ in msgs]
        self.assertEqual(types[-1], "completed", types)
        previews = [m for m, _, _ in msgs if m["type"] == "preview"]
        self.assertGreaterEqual(len(previews), 10, "%d previews in 3 s at 10 Hz" % len(previews))
        counts = []
        for p in previews:
            arr, _ = decode_preview(self, p, shape, 1)
            self.assertLessEqual(label_set(arr), {0, 1, 2})
            counts.append(int(np.count_nonzero(arr)))
        for a, b in zip(counts, counts[1:]):
            self.assertLessEqual(a, b, "blobs mask shrank: non-zero counts %r" % counts)
        self.assertGreater(counts[-1], counts[0], "blobs mask never grew: %r" % counts)
        final, _ = decode_preview(self, previews[-1], shape, 1)
        self.assertEqual(label_set(final), {0, 1, 2},
                         "the final blobs mask should hold background, membranes and particles")
        # the set of non-zero voxels only grows (not just its size)
        prev = None
        for p in previews:
            arr, _ = decode_preview(self, p, shape, 1)
            if prev is not None:
                self.assertTrue(np.all(arr[prev != 0] == prev[prev != 0]),
                                "a revealed voxel changed its label")
            prev = arr

    async def test_seq_rules(self):
        job = self.make_job({"volume": {"shape": [8, 8, 8]},
                             "params": {"preview_hz": 10, "duration_s": 60}})
        jid = job["job_id"]
        a = await ws_connect(self.server, jid)
        try:
            await recv_type(a, "preview")
            msgs_a = await collect_for(a, 1.0)
            b = await ws_connect(self.server, jid)
            try:
                conn_b, _ = await recv_msg(b)
                self.assertEqual(conn_b["type"], "connected")
                last_seq = conn_b["data"]["last_seq"]
                self.assertGreaterEqual(last_seq, 1)
                msgs_b = await collect_for(b, 1.0)
            finally:
                await b.close()
            msgs_a += await collect_for(a, 0.3)
        finally:
            await a.close()
        seqs_a = [m["seq"] for m, _, _ in msgs_a]
        self.assertTrue(all(s >= 1 for s in seqs_a), seqs_a)
        self.assertEqual(seqs_a, sorted(set(seqs_a)), "seq not strictly increasing")
        self.assertTrue(msgs_b, "late joiner got nothing after connected")
        self.assertEqual(msgs_b[0][0]["type"], "preview", "latest preview not replayed first")
        self.assertLessEqual(msgs_b[0][0]["seq"], last_seq)
        seqs_b = [m["seq"] for m, _, _ in msgs_b]
        self.assertEqual(seqs_b, sorted(set(seqs_b)))
        for s in seqs_b[1:]:
            self.assertGreater(s, last_seq)
        # same seq => same bytes, on both connections
        by_seq_a = {m["seq"]: raw for m, raw, _ in msgs_a}
        common = [s for s in seqs_b if s in by_seq_a]
        self.assertTrue(common, "no event seen by both subscribers")
        for m, raw, _ in msgs_b:
            if m["seq"] in by_seq_a:
                self.assertEqual(raw, by_seq_a[m["seq"]], "seq %d differs" % m["seq"])

    async def test_ping_pong(self):
        job = self.make_job({"volume": {"shape": [8, 8, 8]},
                             "params": {"preview_hz": 10, "duration_s": 60}})
        ws = await ws_connect(self.server, job["job_id"])
        try:
            await recv_msg(ws)
            for _ in range(3):
                await ws.send('{"type":"ping"}')
                pong = await recv_type(ws, "pong")
                check_envelope(self, pong, job["job_id"])
                self.assertEqual(pong["seq"], 0)
                self.assertEqual(pong["data"], {})
            # a ping on a finished job works too
            await asyncio.to_thread(self.server.request, "DELETE", "/v1/jobs/%s" % job["job_id"])
            await recv_type(ws, "cancelled")
            await ws.send('{"type": "ping", "extra": [1, 2]}')
            pong = await recv_type(ws, "pong")
            self.assertEqual(pong["seq"], 0)
        finally:
            await ws.close()

    async def _late_join_after_terminal(self, job_id, terminal_type, earlier):
        """Connects to a finished job: connected, latest preview, terminal
        message (bytes equal to what a live subscriber got), then stays open."""
        ws = await ws_connect(self.server, job_id)
        try:
            conn, _ = await recv_msg(ws)
            self.assertEqual(conn["type"], "connected")
            msgs = []
            await recv_until(ws, lambda m: m["type"] == terminal_type, collect=msgs)
            self.assertEqual([m["type"] for m, _, _ in msgs], ["preview", terminal_type])
            prev, term = msgs[0], msgs[1]
            self.assertLess(prev[0]["seq"], term[0]["seq"])
            self.assertEqual(conn["data"]["last_seq"], term[0]["seq"])
            self.assertEqual(conn["data"]["state"], term[0]["data"]["state"])
            self.assertEqual(prev[1], earlier["preview"], "replayed preview differs")
            self.assertEqual(term[1], earlier[terminal_type], "replayed terminal message differs")
            rp = await asyncio.to_thread(self.server.get, "/v1/jobs/%s/preview" % job_id)
            self.assertEqual(rp.body.decode(), prev[1])
            # the connection stays open after the job ended
            extra = await collect_for(ws, 1.5)
            self.assertEqual(extra, [], "unexpected messages on a finished job")
            self.assertTrue(ws.open, "server closed a subscription to a finished job")
            await ws.send('{"type":"ping"}')
            await recv_type(ws, "pong")
        finally:
            await ws.close()
        self.assertEqual(ws.close_code, 1000)
        return conn

    async def test_late_joiner_completed(self):
        job = self.make_job({"volume": {"shape": [10, 10, 10]},
                             "params": {"preview_hz": 5, "duration_s": 1, "pattern": "blobs"}})
        jid = job["job_id"]
        live = await ws_connect(self.server, jid)
        msgs = []
        try:
            await recv_until(live, lambda m: m["type"] in TERMINAL, timeout=30, collect=msgs)
        finally:
            await live.close()
        last = {}
        for m, raw, _ in msgs:
            last[m["type"]] = raw
        self.assertIn("completed", last)
        conn = await self._late_join_after_terminal(jid, "completed", last)
        self.assertEqual(conn["data"]["state"], "completed")
        self.assertEqual(conn["data"]["progress"], 1)

    async def test_late_joiner_cancelled(self):
        job = self.make_job({"volume": {"shape": [10, 10, 10]},
                             "params": {"preview_hz": 5, "duration_s": 100}})
        jid = job["job_id"]
        live = await ws_connect(self.server, jid)
        msgs = []
        try:
            await recv_type(live, "preview", collect=msgs)
            r = await asyncio.to_thread(self.server.request, "DELETE", "/v1/jobs/%s" % jid)
            self.assertEqual(r.status, 200)
            await recv_type(live, "cancelled", collect=msgs)
        finally:
            await live.close()
        last = {}
        for m, raw, _ in msgs:
            last[m["type"]] = raw
        conn = await self._late_join_after_terminal(jid, "cancelled", last)
        self.assertEqual(conn["data"]["state"], "cancelled")

    async def test_client_close_is_clean(self):
        job = self.make_job({"volume": {"shape": [8, 8, 8]},
                             "params": {"preview_hz": 20, "duration_s": 60}})
        for _ in range(5):
            ws = await ws_connect(self.server, job["job_id"])
            await recv_msg(ws)
            await ws.close()
            self.assertEqual(ws.close_code, 1000)
        self.server.assert_healthy()


if __name__ == "__main__":
    main()
