"""Chunked delta previews (docs/protocol.md §11) against the real server:
reconstruction equals the artifact at every level, slow readers converge,
reconnects resume from their last complete seq, views bring full-resolution
planes, bad input gets clear errors."""

import asyncio
import json
import os
import subprocess

import websockets

from chunk_client import ChunkClient, follow, level_shape, max_downsample, ProtocolError
from harness import (EV, SPEED_SCALE, Server, ServerTestCase, decode_preview, main,
                     read_mrc)

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.environ.get("CRYOMAMBA_CLI_BIN") or os.path.join(
    HERE, "..", "..", "build", "src", "cli", "cryomamba")


class ChunksTest(ServerTestCase):
    SERVER_ARGS = ("--max-running", "4")

    def artifact(self, jid):
        r = self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % jid)
        self.assertEqual(r.status, 200)
        return read_mrc(r.body)[1]

    async def watch(self, jid, query="?encoding=chunks", client=None, **kw):
        client = client or ChunkClient()
        async with websockets.connect(self.server.ws_url(jid) + query,
                                      max_size=None) as ws:
            await asyncio.wait_for(follow(ws, client, **kw), EV * 4 * SPEED_SCALE)
        return client

    def assert_levels(self, client, full, levels):
        for lv in levels:
            want = max_downsample(full, lv)
            got = client.mask(lv)
            self.assertEqual(got.shape, want.shape)
            diff = int((got != want).sum())
            self.assertEqual(diff, 0, "level %d: %d voxels differ" % (lv, diff))

    async def test_blobs_reconstruction_equals_the_artifact_at_each_scale(self):
        # preview_scale 4: the chunk passes draw the mask slab by slab (the
        # previews are coarser than the chunks' level 0).
        job = self.make_job({"volume": {"shape": [70, 100, 90]}}, pattern="blobs",
                            preview_hz=8, duration_s=1.5, seed=7, preview_scale=4)
        jid = job["job_id"]
        clients = await asyncio.gather(*[
            self.watch(jid, "?encoding=chunks&scale=%d" % s) for s in (1, 2, 4, 16)])
        full = self.artifact(jid)
        self.assertGreater(int((full > 0).sum()), 0)
        for lv, c in zip((0, 1, 2, 4), clients):
            self.assertEqual(c.terminal["type"], "completed")
            self.assertTrue(c.deltas[0]["keyframe"])
            self.assertTrue(c.deltas[-1]["complete"])
            self.assertEqual(c.deltas[-1]["scale"], 1 << lv)
            self.assertEqual(c.deltas[-1]["shape"], list(level_shape(full.shape, lv)))
            self.assertEqual(c.connected["chunks"]["edge"], 32)
            self.assert_levels(c, full, [lv])
        # Deltas carry only what changed: far fewer chunk bytes than the
        # previews would have been.
        self.assertGreater(len(clients[0].deltas), 3)

    async def test_classic_engine_chunks_grow_and_end_as_the_artifact(self):
        """A mask engine: regions reported window by window, passes read the
        mask file; a subscriber from the start and one joining mid-run."""
        path = os.path.join(self.server.data_root, "ph-chunks.mrc")
        r = subprocess.run([CLI, "phantom", "--shape", "64,96,96", "--seed", "5",
                            "-o", path], capture_output=True, text=True, timeout=EV * 4)
        self.assertEqual(r.returncode, 0, r.stderr)
        job = self.make_job({"volume_path": "ph-chunks.mrc"}, preview_hz=20,
                            engine_params={"window": 32})
        jid = job["job_id"]
        self.assertEqual(job["params"]["engine"], "classic")
        late = ChunkClient()

        async def join_late():
            while True:  # joins once the run is under way
                got = self.server.get("/v1/jobs/%s" % jid).json
                if got["state"] != "queued":
                    break
                await asyncio.sleep(0.02)
            return await self.watch(jid, "?encoding=chunks&scale=2", client=late)
        early, _ = await asyncio.wait_for(asyncio.gather(
            self.watch(jid, "?encoding=chunks&scale=1"), join_late()), EV * 8 * SPEED_SCALE)
        full = self.artifact(jid)
        self.assertGreater(int((full > 0).sum()), 0)
        self.assertEqual(early.terminal["type"], "completed")
        self.assert_levels(early, full, [0])
        self.assert_levels(late, full, [1])
        self.assertGreater(len(early.deltas), 2, "the mask grew in steps")

    def metric(self, name):
        for line in self.server.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("metric %s missing" % name)

    async def test_subscribers_in_step_share_each_delta_and_all_converge(self):
        sent0 = self.metric("cryomamba_chunk_deltas_sent_total")
        shared0 = self.metric("cryomamba_chunk_deltas_shared_total")
        job = self.make_job({"volume": {"shape": [64, 96, 96]}}, pattern="blobs",
                            preview_hz=10, duration_s=1.5, seed=2)
        jid = job["job_id"]
        clients = await asyncio.gather(*[
            self.watch(jid, "?encoding=chunks&scale=1") for _ in range(12)])
        full = self.artifact(jid)
        for c in clients:
            self.assert_levels(c, full, [0])
        sent = self.metric("cryomamba_chunk_deltas_sent_total") - sent0
        shared = self.metric("cryomamba_chunk_deltas_shared_total") - shared0
        self.assertGreaterEqual(sent, 12 * 3)
        # Each live delta is composed by the first subscriber at a base and
        # sent as is to the others.
        self.assertGreater(shared, sent / 2, (sent, shared))

    async def test_every_complete_delta_is_the_mask_of_its_preview(self):
        """Not only at the end: the mask a complete delta of seq S leaves is
        the server's mask at S, i.e. what the base64 preview of seq S shows
        (blobs at preview_scale 2: its nearest-origin samples, and the chunk
        passes draw the mask slab by slab; random at scale 1, its previews
        being drawn at their own scale, not sampled from the full mask)."""
        for pattern, scale in (("blobs", 2), ("random", 1)):
            job = self.make_job({"volume": {"shape": [45, 66, 70]}}, pattern=pattern,
                                preview_hz=10, duration_s=1.2, seed=8, preview_scale=scale)
            jid = job["job_id"]
            snaps = {}

            def on_message(t, cl):
                seq = cl.last_complete[0] if cl.last_complete else None
                if seq is not None and seq not in snaps:
                    snaps[seq] = cl.mask(0)[::scale, ::scale, ::scale].copy()
                return False
            previews = {}

            async def base64_sub():
                async with websockets.connect(self.server.ws_url(jid), max_size=None) as ws:
                    async for raw in ws:
                        m = json.loads(raw)
                        if m["type"] == "preview":
                            previews[m["seq"]] = decode_preview(self, m)[0]
                        if m["type"] == "completed":
                            return
            await asyncio.gather(self.watch(jid, "?encoding=chunks&scale=1",
                                            on_message=on_message), base64_sub())
            common = sorted(set(snaps) & set(previews))
            self.assertGreaterEqual(len(common), 3, (pattern, sorted(snaps), sorted(previews)))
            for seq in common:
                diff = int((snaps[seq] != previews[seq]).sum())
                self.assertEqual(diff, 0, "%s seq %d: %d voxels differ" % (pattern, seq, diff))

    async def test_random_every_chunk_changes_and_still_converges(self):
        job = self.make_job({"volume": {"shape": [40, 64, 66]}}, pattern="random",
                            preview_hz=10, duration_s=1.0, preview_scale=2)
        c = await self.watch(job["job_id"], "?encoding=chunks&scale=1")
        self.assert_levels(c, self.artifact(job["job_id"]), [0])

    async def test_late_joiner_gets_the_final_mask_then_completed(self):
        job = self.make_job({"volume": {"shape": [64, 64, 64]}}, pattern="blobs",
                            preview_hz=10, duration_s=0.5)
        jid = job["job_id"]
        await self.watch(jid, "?encoding=zstd" if False else "?encoding=chunks&scale=2")
        c = await self.watch(jid, "?encoding=chunks&scale=1")
        self.assertTrue(c.deltas[0]["keyframe"])
        self.assertEqual(c.terminal["type"], "completed")
        self.assert_levels(c, self.artifact(jid), [0])

    async def test_a_slow_reader_converges_and_never_goes_back(self):
        job = self.make_job({"volume": {"shape": [96, 128, 128]}}, pattern="blobs",
                            preview_hz=20, duration_s=2.0)
        jid = job["job_id"]
        c = ChunkClient()
        async with websockets.connect(self.server.ws_url(jid) + "?encoding=chunks&scale=1",
                                      max_size=None, max_queue=1) as ws:
            n = 0
            async for raw in ws:
                c.feed(raw)  # raises on a stale chunk or a base mismatch
                n += 1
                if n % 8 == 0:
                    await asyncio.sleep(0.05)  # reads slowly, on purpose
                if c.terminal is not None:
                    break
        self.assertEqual(c.terminal["type"], "completed")
        self.assert_levels(c, self.artifact(jid), [0])

    async def test_reconnect_with_since_gets_only_what_changed(self):
        job = self.make_job({"volume": {"shape": [96, 96, 96]}}, pattern="blobs",
                            preview_hz=10, duration_s=2.5)
        jid = job["job_id"]
        c = ChunkClient()
        # First connection: until two complete deltas have landed.
        def enough(t, cl):
            return cl.last_complete is not None and len(cl.deltas) >= 3
        await self.watch(jid, client=c, until_terminal=False, on_message=enough)
        seq, epoch = c.last_complete
        first_chunks = len(c.versions)
        c2 = await self.watch(jid, "?encoding=chunks&scale=1&since=%d&epoch=%s"
                              % (seq, epoch), client=c)
        resumed = [d for d in c2.deltas if d["base"] == seq]
        self.assertTrue(resumed, "no delta based on the since seq")
        self.assertFalse(resumed[0]["keyframe"])
        self.assert_levels(c2, self.artifact(jid), [0])
        self.assertGreater(first_chunks, 0)
        # A wrong epoch: a keyframe instead.
        c3 = ChunkClient()
        c3.last_complete = (seq, "0000000000000000")
        c3.vol = c.vol
        async with websockets.connect(self.server.ws_url(jid) +
                                      "?encoding=chunks&since=%d&epoch=0000000000000000" % seq,
                                      max_size=None) as ws:
            msgs = []
            async for raw in ws:
                if isinstance(raw, str):
                    m = json.loads(raw)
                    msgs.append(m)
                    if m["type"] == "delta":
                        break
        self.assertTrue(msgs[-1]["data"]["keyframe"])
        self.assertEqual(msgs[-1]["data"]["base"], 0)

    async def test_a_view_brings_full_resolution_planes_first(self):
        job = self.make_job({"volume": {"shape": [64, 96, 128]}}, pattern="blobs",
                            preview_hz=10, duration_s=1.0)
        jid = job["job_id"]
        c = ChunkClient()
        async with websockets.connect(self.server.ws_url(jid) + "?encoding=chunks&scale=16",
                                      max_size=None) as ws:
            first = c.feed(await ws.recv())
            self.assertEqual(first, "connected")
            await ws.send(json.dumps({"type": "view", "z": 40, "y": 50, "x": None,
                                      "zoom": 2}))
            await asyncio.wait_for(follow(ws, c), EV * 4)
        full = self.artifact(jid)
        got = c.mask(0)
        self.assertTrue((got[40] == full[40]).all(), "plane z=40 differs")
        self.assertTrue((got[:, 50] == full[:, 50]).all(), "plane y=50 differs")
        self.assert_levels(c, full, [4])
        self.assertTrue(any(d["plane_scale"] == 1 for d in c.deltas))

    async def test_view_changes_mid_stream_bring_the_new_planes(self):
        job = self.make_job({"volume": {"shape": [96, 96, 96]}}, pattern="blobs",
                            preview_hz=20, duration_s=1.5, seed=11)
        jid = job["job_id"]
        c = ChunkClient()
        views = [{"z": 10}, {"z": 50, "x": 20, "zoom": 1.5}, {"y": 70, "zoom": 0.5},
                 {"z": 60, "y": 5, "x": 90}]
        async with websockets.connect(self.server.ws_url(jid) + "?encoding=chunks&scale=8",
                                      max_size=None) as ws:
            sent = 0
            deltas_at_last_view = 0
            async for raw in ws:
                c.feed(raw)
                # A new view every few complete deltas, while the job runs.
                if (sent < len(views) and c.pending == 0 and
                        len(c.deltas) >= 1 + 2 * sent and c.terminal is None):
                    await ws.send(json.dumps(dict({"type": "view"}, **views[sent])))
                    sent += 1
                    deltas_at_last_view = len(c.deltas)
                if c.terminal is not None:
                    break
        self.assertEqual(sent, len(views), "the job ended before every view was sent")
        self.assertGreater(len(c.deltas), deltas_at_last_view)
        full = self.artifact(jid)
        got = c.mask(0)
        self.assertTrue((got[60] == full[60]).all(), "plane z=60")
        self.assertTrue((got[:, 5] == full[:, 5]).all(), "plane y=5")
        self.assertTrue((got[:, :, 90] == full[:, :, 90]).all(), "plane x=90")
        self.assert_levels(c, full, [3])
        # zoom 0.5 asked for plane level 1 (scale 2) while it was the view.
        self.assertIn(2, [d["plane_scale"] for d in c.deltas])

    async def test_bad_views_and_queries_get_clear_errors(self):
        job = self.make_job({"volume": {"shape": [32, 32, 32]}}, pattern="blobs",
                            preview_hz=2, duration_s=30)
        jid = job["job_id"]
        async with websockets.connect(self.server.ws_url(jid) + "?encoding=chunks",
                                      max_size=None) as ws:
            for bad in ('{"type":"view","z":32}', '{"type":"view","z":-1}',
                        '{"type":"view","y":"3"}', '{"type":"view","zoom":0}',
                        '{"type":"view","zoom":"big"}', '{"type":"view","x":1.5}'):
                await ws.send(bad)
                while True:
                    m = json.loads(await asyncio.wait_for(self._text(ws), EV))
                    if m["type"] == "error" and m["seq"] == 0:
                        break
                self.assertEqual(m["data"]["code"], "bad_message", bad)
            await ws.send('{"type":"ping"}')
            while True:
                m = json.loads(await asyncio.wait_for(self._text(ws), EV))
                if m["type"] == "pong":
                    break
        async with websockets.connect(self.server.ws_url(jid), max_size=None) as ws:
            await ws.send('{"type":"view","z":1}')
            while True:
                m = json.loads(await asyncio.wait_for(self._text(ws), EV))
                if m["type"] == "error":
                    break
            self.assertEqual(m["data"]["code"], "bad_message")
        for q in ("?encoding=chunks&scale=3", "?encoding=chunks&scale=32",
                  "?encoding=zstd&scale=2", "?encoding=chunks&since=4",
                  "?encoding=chunks&since=x&epoch=00", "?encoding=nope"):
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                async with websockets.connect(self.server.ws_url(jid) + q):
                    pass
            self.assertEqual(cm.exception.status_code, 400, q)

    async def _text(self, ws):
        while True:
            raw = await ws.recv()
            if isinstance(raw, str):
                return raw


class ChunkTableLifeTest(ServerTestCase):
    """Tables rebuilt from the artifact: after a restart, after eviction."""

    SERVER_ARGS = ("--preview-cache-bytes", "0")

    async def keyframe_of(self, srv, jid, query="", resume=None):
        c = ChunkClient()
        c.last_complete = resume
        async with websockets.connect(srv.ws_url(jid) + "?encoding=chunks&scale=1" + query,
                                      max_size=None) as ws:
            await asyncio.wait_for(follow(ws, c), EV * 4 * SPEED_SCALE)
        return c

    def artifact(self, srv, jid):
        r = srv.get("/v1/jobs/%s/artifacts/mask.mrc" % jid)
        self.assertEqual(r.status, 200)
        return read_mrc(r.body)[1]

    async def test_after_a_restart_the_table_comes_from_the_artifact(self):
        s1 = Server(()).start()
        try:
            job = s1.create_job({"volume": {"shape": [48, 64, 80]}, "params": {
                "pattern": "blobs", "preview_hz": 10, "duration_s": 0.4, "seed": 9}})
            jid = job["job_id"]
            before = await self.keyframe_of(s1, jid)
            self.assertEqual(s1.stop(), 0)
            s2 = Server((), state_dir=s1.state_dir, data_root=s1.data_root).start()
            try:
                after = await self.keyframe_of(s2, jid)
                self.assertTrue(after.deltas[0]["keyframe"])
                self.assertNotEqual(after.deltas[0]["epoch"], before.deltas[0]["epoch"])
                self.assertEqual(after.terminal["type"], "completed")
                full = self.artifact(s2, jid)
                self.assertTrue((after.mask(0) == full).all())
                self.assertTrue((before.mask(0) == full).all())
                # An old epoch: a keyframe, not a resume.
                seq, epoch = before.last_complete
                again = await self.keyframe_of(s2, jid, "&since=%d&epoch=%s" % (seq, epoch),
                                               resume=(seq, epoch))
                self.assertTrue(again.deltas[0]["keyframe"])
            finally:
                s2.stop()
                s2.cleanup()
        finally:
            s1.cleanup()

    async def test_an_evicted_table_is_built_again_with_a_new_epoch(self):
        job = self.make_job({"volume": {"shape": [40, 40, 40]}}, pattern="blobs",
                            preview_hz=10, duration_s=0.3, seed=4)
        jid = job["job_id"]
        first = await self.keyframe_of(self.server, jid)
        seq, epoch = first.last_complete
        # With a cache of 0 bytes the table goes at the next housekeeping
        # (once a second) after its subscriber left: poll for the new epoch.
        deadline = asyncio.get_running_loop().time() + EV * 2
        while True:
            c = await self.keyframe_of(self.server, jid, "&since=%d&epoch=%s" % (seq, epoch),
                                       resume=(seq, epoch))
            if c.deltas[0]["epoch"] != epoch:
                break
            self.assertFalse(c.deltas[0]["keyframe"], "same epoch: a resume")
            self.assertLess(asyncio.get_running_loop().time(), deadline, "never evicted")
            await asyncio.sleep(0.2)
        self.assertTrue(c.deltas[0]["keyframe"])
        self.assertTrue((c.mask(0) == self.artifact(self.server, jid)).all())


if __name__ == "__main__":
    main()
