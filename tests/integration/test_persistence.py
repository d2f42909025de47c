#!/usr/bin/python3
"""Persistence (docs/protocol.md §8): jobs live in SQLite under --state-dir.
After a restart with the same state dir, finished jobs are listed as before
and their artifacts download; a job that was running when the server stopped
is failed with errors[0].code == "interrupted"; new jobs still work."""

import asyncio
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from harness import (EV, Server, TS_RE, assert_error, check_envelope,  # noqa: E402
                     check_job_object, main, read_mrc, recv_msg, recv_type, recv_until,
                     wait_closed_code, ws_connect)


class PersistenceTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
        if self.servers:
            self.servers[0].cleanup()

    def start(self, state_dir=None, data_root=None, args=("--max-running", "2")):
        s = Server(args, state_dir=state_dir, data_root=data_root).start()
        self.servers.append(s)
        return s

    def stop(self, s, sig=signal.SIGTERM):
        rc = s.stop(sig)
        self.assertEqual(rc, 0, "exit status %r; stderr: %s" % (rc, s.stderr_tail()))

    async def test_restart_keeps_jobs_and_marks_interrupted(self):
        s1 = self.start()
        done = s1.create_job({"volume": {"shape": [12, 14, 16], "voxel_size": [1.5, 2, 2.5]},
                              "params": {"preview_hz": 5, "duration_s": 1, "seed": 8,
                                         "pattern": "blobs"}})
        cancelled = s1.create_job({"volume": {"shape": [4, 4, 4]},
                                   "params": {"duration_s": 600}})
        done_id, canc_id = done["job_id"], cancelled["job_id"]
        before_done = s1.wait_state(done_id, "completed", timeout=30)
        self.assertEqual(s1.request("DELETE", "/v1/jobs/%s" % canc_id).status, 200)
        before_canc = s1.job(canc_id)
        art1 = s1.get("/v1/jobs/%s/artifacts/mask.mrc" % done_id)
        self.assertEqual(art1.status, 200)
        running = s1.create_job({"volume": {"shape": [8, 8, 8]},
                                 "params": {"preview_hz": 5, "duration_s": 600}})
        run_id = running["job_id"]
        s1.wait_state(run_id, "running")
        ws = await ws_connect(s1, run_id)
        await recv_type(ws, "preview")
        listing1 = s1.get("/v1/jobs").json

        rc_task = asyncio.create_task(asyncio.to_thread(s1.stop, signal.SIGTERM))
        code, _ = await wait_closed_code(ws, timeout=10)
        self.assertEqual(code, 1001)
        self.assertEqual(await rc_task, 0)

        s2 = self.start(state_dir=s1.state_dir, data_root=s1.data_root)
        listing2 = s2.get("/v1/jobs").json
        self.assertEqual(listing2["count"], listing1["count"])
        self.assertEqual([j["job_id"] for j in listing2["jobs"]],
                         [j["job_id"] for j in listing1["jobs"]])
        for j in listing2["jobs"]:
            check_job_object(self, j)

        # the completed job is unchanged and its artifact is the same file
        after_done = s2.job(done_id)
        for k in ("state", "params", "volume", "preview_shape", "progress", "artifacts",
                  "stats", "errors", "created_at", "started_at", "finished_at"):
            self.assertEqual(after_done[k], before_done[k], k)
        art2 = s2.get("/v1/jobs/%s/artifacts/mask.mrc" % done_id)
        self.assertEqual(art2.status, 200)
        self.assertEqual(art2.body, art1.body)
        hdr, data, voxel = read_mrc(art2.body)
        self.assertEqual(list(data.shape), [12, 14, 16])
        np.testing.assert_allclose(voxel, [1.5, 2, 2.5], rtol=1e-4)

        # the cancelled job is unchanged
        after_canc = s2.job(canc_id)
        self.assertEqual(after_canc["state"], "cancelled")
        self.assertEqual(after_canc["finished_at"], before_canc["finished_at"])
        assert_error(self, s2.request("DELETE", "/v1/jobs/%s" % canc_id), 409, "job_finished")

        # the running job was interrupted
        after_run = s2.job(run_id)
        self.assertEqual(after_run["state"], "failed")
        self.assertTrue(after_run["errors"], after_run)
        self.assertEqual(after_run["errors"][0]["code"], "interrupted")
        self.assertIsInstance(after_run["errors"][0]["message"], str)
        self.assertRegex(after_run["finished_at"], TS_RE)
        self.assertEqual(after_run["artifacts"], [])
        assert_error(self, s2.get("/v1/jobs/%s/artifacts/mask.mrc" % run_id), 409,
                     "job_not_completed")
        assert_error(self, s2.request("DELETE", "/v1/jobs/%s" % run_id), 409, "job_finished")

        # late joiners after the restart
        w = await ws_connect(s2, run_id)
        try:
            conn, _ = await recv_msg(w)
            self.assertEqual(conn["type"], "connected")
            self.assertEqual(conn["data"]["state"], "failed")
            err = await recv_type(w, "error", timeout=EV)
            check_envelope(self, err, run_id)
            self.assertGreaterEqual(err["seq"], 1, "a job's failure is a job event (seq >= 1)")
            self.assertEqual(err["data"]["code"], "interrupted")
        finally:
            await w.close()
        w = await ws_connect(s2, done_id)
        try:
            conn, _ = await recv_msg(w)
            self.assertEqual(conn["data"]["state"], "completed")
            comp = await recv_type(w, "completed", timeout=EV)
            self.assertEqual(comp["data"]["artifacts"], before_done["artifacts"])
            self.assertGreater(comp["seq"], 0)
        finally:
            await w.close()

        # new jobs work after the restart, with fresh ids
        new = s2.create_job({"volume": {"shape": [4, 4, 4]}, "params": {"duration_s": 0}})
        self.assertNotIn(new["job_id"], [j["job_id"] for j in listing1["jobs"]])
        s2.wait_state(new["job_id"], "completed", timeout=30)
        self.assertEqual(s2.get("/v1/jobs").json["jobs"][0]["job_id"], new["job_id"])
        self.stop(s2)

        # and a third start still sees everything (no double "interrupted" marking)
        s3 = self.start(state_dir=s1.state_dir, data_root=s1.data_root)
        self.assertEqual(s3.get("/v1/jobs").json["count"], listing1["count"] + 1)
        self.assertEqual(len(s3.job(run_id)["errors"]), 1)
        self.assertEqual(s3.job(new["job_id"])["state"], "completed")
        self.stop(s3)

    async def test_seq_continues_after_restart(self):
        s1 = self.start()
        job = s1.create_job({"volume": {"shape": [4, 4, 4]},
                             "params": {"preview_hz": 10, "duration_s": 0.5}})
        w = await ws_connect(s1, job["job_id"])
        msgs = []
        try:
            await recv_until(w, lambda m: m["type"] == "completed", timeout=30, collect=msgs)
        finally:
            await w.close()
        last_seq = msgs[-1][0]["seq"]
        self.stop(s1)
        s2 = self.start(state_dir=s1.state_dir, data_root=s1.data_root)
        w = await ws_connect(s2, job["job_id"])
        try:
            conn, _ = await recv_msg(w)
            self.assertEqual(conn["data"]["last_seq"], last_seq)
            comp = await recv_type(w, "completed")
            self.assertEqual(comp["seq"], last_seq)
        finally:
            await w.close()
        self.stop(s2)


class QueuedJobsTest(unittest.IsolatedAsyncioTestCase):
    async def test_queued_jobs_queue_again_after_a_restart(self):
        s1 = Server(("--max-running", "1")).start()
        try:
            blocker = s1.create_job({"params": {"duration_s": 600}})
            s1.wait_state(blocker["job_id"], "running")
            waiting = s1.create_job({"volume": {"shape": [6, 6, 6]},
                                     "params": {"duration_s": 0.2}})
            self.assertEqual(s1.job(waiting["job_id"])["state"], "queued")
            self.assertEqual(s1.stop(), 0)
            s2 = Server(("--max-running", "1"), state_dir=s1.state_dir).start()
            try:
                self.assertEqual(s2.job(blocker["job_id"])["state"], "failed")
                done = s2.wait_state(waiting["job_id"], "completed", timeout=30)
                self.assertEqual(done["errors"], [])
                self.assertEqual(s2.stop(), 0)
            finally:
                s2.kill()
        finally:
            s1.cleanup()


class PreviewCacheTest(unittest.IsolatedAsyncioTestCase):
    """--preview-cache-bytes bounds the memory that finished jobs' final
    previews take: beyond it they are dropped and rendered again, with the
    same seq and bytes, when a client asks (REST waits for it; a WebSocket
    late joiner gets preview then terminal message)."""

    def metric(self, server, name):
        for line in server.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("metric %s missing" % name)

    async def test_evicted_previews_come_back_identical(self):
        s = Server(("--preview-cache-bytes", "0")).start()
        try:
            jobs = [s.create_job({"volume": {"shape": [20, 24, 28]},
                                  "params": {"preview_hz": 10, "duration_s": 0.3,
                                             "seed": seed, "pattern": "blobs",
                                             "preview_scale": 2}})
                    for seed in (1, 2)]
            # Catch the final preview live, before it can be evicted.
            ws = await ws_connect(s, jobs[1]["job_id"])
            live = {}
            try:
                while True:
                    msg, raw = await recv_msg(ws)
                    if msg["type"] == "preview":
                        live[msg["seq"]] = raw
                    if msg["type"] == "completed":
                        break
            finally:
                await ws.close()
            for job in jobs:
                s.wait_state(job["job_id"], "completed")
            deadline = asyncio.get_running_loop().time() + EV
            while self.metric(s, "cryomamba_previews_evicted_total") < 2:
                self.assertLess(asyncio.get_running_loop().time(), deadline,
                                "finished previews were never evicted")
                await asyncio.sleep(0.1)
            final_raw = live[max(live)]
            # REST: answered after the re-render, byte for byte the same.
            r = s.get("/v1/jobs/%s/preview" % jobs[1]["job_id"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body.decode(), final_raw)
            # WebSocket late joiner of the other evicted job: preview, then
            # completed, in seq order.
            ws = await ws_connect(s, jobs[0]["job_id"])
            try:
                msg, _ = await recv_msg(ws)
                self.assertEqual(msg["type"], "connected")
                preview, _ = await recv_msg(ws)
                self.assertEqual(preview["type"], "preview")
                done, _ = await recv_msg(ws)
                self.assertEqual(done["type"], "completed")
                self.assertLess(preview["seq"], done["seq"])
            finally:
                await ws.close()
            s.assert_healthy()
            self.assertEqual(s.stop(), 0)
        finally:
            s.cleanup()


if __name__ == "__main__":
    main()
