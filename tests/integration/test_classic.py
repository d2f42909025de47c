#!/usr/bin/python3
"""The built-in `classic` engine (docs/engines.md) against the real server:
phantoms written by `cryomamba phantom` are uploaded (or put under the data
root) and segmented; the truth is the `sim` engine's `blobs` mask of the
same shape and seed (the phantom's exact structures, src/core/mask.c).
Dice per label with a generous bar, the same mask for the same input,
previews that grow and end as the artifact, cancel mid-run (nothing
published after, every file released), a server stop mid-run, int16 input,
bad engine_params, the default engine rule, the server-wide worker budget,
and volumes that change under a run (a volume_path file truncated or
rewritten: the job fails volume_changed, the server goes on; an uploaded
volume deleted: the run completes). Run it through meson (CRYOMAMBA_CLI_BIN names the CLI)."""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from harness import (EV, SPEED_SCALE, STOP_TIMEOUT, Server, assert_error,  # noqa: E402
                     decode_preview, main, read_mrc, recv_msg, ws_connect)

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.environ.get("CRYOMAMBA_CLI_BIN") or os.path.join(
    HERE, "..", "..", "build", "src", "cli", "cryomamba")
# A classic run on a few M voxels takes seconds; a sanitizer build, more.
RUN_TIMEOUT = 120 * SPEED_SCALE


def poll(cond, timeout=EV, what="condition"):
    """Polls cond() until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


def phantom(path, shape, seed, noise=0.5):
    r = subprocess.run([CLI, "phantom", "--shape", ",".join(str(n) for n in shape), "-o", path,
                        "--seed", str(seed), "--noise", str(noise)],
                       capture_output=True, text=True, timeout=EV * 4)
    assert r.returncode == 0, r.stderr


def upload(s, data):
    """Uploads `data` with tus (one PATCH); returns the volume id."""
    tus = {"Tus-Resumable": "1.0.0"}
    r = s.request("POST", "/v1/uploads", headers=dict(tus, **{"Upload-Length": str(len(data))}))
    assert r.status == 201, r
    r = s.request("PATCH", r.header("Location"), raw=data, timeout=EV * 4,
                  headers=dict(tus, **{"Content-Type": "application/offset+octet-stream",
                                       "Upload-Offset": "0"}))
    assert r.status == 204, r
    return r.header("CryoMamba-Volume-Id")


def dice(a, b, label):
    x, y = a == label, b == label
    return 2.0 * float((x & y).sum()) / max(1.0, float(x.sum() + y.sum()))


def max_downsample(mask, scale):
    pz, py, px = [-(-n // scale) for n in mask.shape]
    pad = np.zeros((pz * scale, py * scale, px * scale), np.uint8)
    pad[:mask.shape[0], :mask.shape[1], :mask.shape[2]] = mask
    return pad.reshape(pz, scale, py, scale, px, scale).max(axis=(1, 3, 5))


def references(pid, needles):
    """The lines of /proc/PID/maps and the targets of /proc/PID/fd that
    name any of `needles`: what the server still has mapped or open."""
    found = []
    with open("/proc/%d/maps" % pid) as f:
        found += [line.strip() for line in f if any(n in line for n in needles)]
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if any(n in target for n in needles):
            found.append("fd %s -> %s" % (fd, target))
    return found


class ClassicCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-classic-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))

    def server(self, *args):
        s = Server(list(args)).start()
        self.addCleanup(s.cleanup)
        return s

    def volume(self, s, shape, seed, noise=0.5):
        """A phantom uploaded to `s`: (volume id, its path here)."""
        path = os.path.join(self.tmp, "ph-%s-%d-%g.mrc" % ("x".join(map(str, shape)), seed, noise))
        if not os.path.exists(path):
            phantom(path, shape, seed, noise)
        with open(path, "rb") as f:
            return upload(s, f.read()), path

    def artifact(self, s, job_id):
        r = s.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id, timeout=EV * 4)
        self.assertEqual(r.status, 200, r)
        return r.body

    def completed(self, s, job_id):
        done = s.wait_state(job_id, ("completed", "failed", "cancelled"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "completed", done["errors"])
        return done

    def truth(self, s, shape, seed):
        job = s.create_job({"volume": {"shape": list(shape)}},
                           pattern="blobs", seed=seed, duration_s=0)
        self.completed(s, job["job_id"])
        return read_mrc(self.artifact(s, job["job_id"]))[1]


class QualityTest(ClassicCase):
    def test_segments_an_uploaded_phantom_like_its_truth(self):
        shape, seed = (128, 128, 128), 1
        s = self.server()
        vid, _ = self.volume(s, shape, seed)
        # No engine named: a job with a volume runs classic.
        job = s.create_job({"volume_id": vid}, engine_params={"window": 64})
        self.assertEqual(job["params"]["engine"], "classic")
        self.assertEqual(job["params"]["engine_params"], {"window": 64})
        done = self.completed(s, job["job_id"])
        self.assertEqual(done["progress"], 1)
        body = self.artifact(s, job["job_id"])
        _, mask, vs = read_mrc(body)
        self.assertEqual(vs, (10.0, 10.0, 10.0))  # the phantom's voxel size
        truth = self.truth(s, shape, seed)
        membrane, particle = dice(mask, truth, 1), dice(mask, truth, 2)
        self.assertGreaterEqual(membrane, 0.8, "membrane Dice %.3f" % membrane)
        self.assertGreaterEqual(particle, 0.6, "particle Dice %.3f" % particle)
        stats = done["stats"]
        self.assertEqual(set(stats["label_counts"]), {"0", "1", "2"})
        self.assertEqual(stats["label_counts"]["2"], int((mask == 2).sum()))
        eng = stats["engine"]
        self.assertEqual(eng["windows"], 8)
        self.assertEqual(eng["window"], 64)
        self.assertEqual(eng["params"]["window"], 64)
        self.assertEqual(eng["params"]["sigma"], 1.25)
        self.assertGreater(eng["components"], 0)
        self.assertGreaterEqual(eng["workers"], 1)
        # The same input gives the same mask, byte for byte; so does another
        # window size (each window's core is exactly the whole volume's).
        again = s.create_job({"volume_id": vid}, engine_params={"window": 64})
        self.completed(s, again["job_id"])
        self.assertEqual(self.artifact(s, again["job_id"]), body)
        default = s.create_job({"volume_id": vid}, engine="classic")
        self.completed(s, default["job_id"])
        self.assertEqual(self.artifact(s, default["job_id"]), body)
        s.assert_healthy()

    def test_int16_volume_path_segments_like_float(self):
        shape, seed = (96, 128, 128), 4
        s = self.server()
        vid, path = self.volume(s, shape, seed)
        with mrcfile.open(path) as m:
            data = np.array(m.data)
        with mrcfile.new(os.path.join(s.data_root, "ph16.mrc")) as m:
            m.set_data(np.clip(np.round(data * 1000), -32768, 32767).astype(np.int16))
            m.voxel_size = 10.0
        j16 = s.create_job({"volume_path": "ph16.mrc"})
        j32 = s.create_job({"volume_id": vid})
        self.assertEqual(j16["params"]["engine"], "classic")
        self.completed(s, j16["job_id"])
        self.completed(s, j32["job_id"])
        m16 = read_mrc(self.artifact(s, j16["job_id"]))[1]
        m32 = read_mrc(self.artifact(s, j32["job_id"]))[1]
        for label in (1, 2):
            self.assertGreaterEqual(dice(m16, m32, label), 0.97, "label %d" % label)
        truth = self.truth(s, shape, seed)
        self.assertGreaterEqual(dice(m16, truth, 1), 0.8)
        self.assertGreaterEqual(dice(m16, truth, 2), 0.5)


class PreviewTest(ClassicCase):
    def test_previews_grow_and_end_as_the_artifact(self):
        shape, scale = (64, 128, 128), 2
        s = self.server()
        vid, _ = self.volume(s, shape, 2)
        job = s.create_job({"volume_id": vid}, preview_hz=30, preview_scale=scale,
                           preview_downsample="max", engine_params={"window": 32})
        job_id = job["job_id"]

        async def go():
            ws = await ws_connect(s, job_id)
            previews, progress = [], []
            try:
                while True:
                    msg, _ = await recv_msg(ws, RUN_TIMEOUT)
                    if msg["type"] == "preview":
                        previews.append(decode_preview(self, msg, list(shape), scale)[0])
                    elif msg["type"] == "progress":
                        progress.append(msg["data"]["progress"])
                    elif msg["type"] in ("completed", "error", "cancelled"):
                        return msg, previews, progress
            finally:
                await ws.close()

        end, previews, progress = asyncio.run(go())
        self.assertEqual(end["type"], "completed", end)
        self.assertEqual(end["data"]["stats"]["engine"]["windows"], 2 * 4 * 4)
        mask = read_mrc(self.artifact(s, job_id))[1]
        self.assertGreaterEqual(len(previews), 2, "no preview before the final one")
        # The last preview is the final mask, downsampled by max.
        self.assertTrue(np.array_equal(previews[-1], max_downsample(mask, scale)))
        # Before it, the mask only grows window by window: a block's largest
        # label never drops (the final pass, which may drop or relabel, is
        # never previewed half-done).
        for k in range(1, len(previews) - 1):
            self.assertTrue((previews[k] >= previews[k - 1]).all(), "preview %d shrank" % k)
        for p in previews:
            self.assertTrue(set(np.unique(p)) <= {0, 1, 2})
        self.assertGreater(int((previews[0] > 0).sum()), 0)
        self.assertEqual(progress, sorted(progress))
        self.assertEqual(progress[-1], 1)
        self.assertEqual(s.stop(), 0, s.stderr_tail())


class CancelTest(ClassicCase):
    def big_job(self, s, **params):
        """A run of 256 windows (4 x 8 x 8), seconds long, on every worker."""
        vid, _ = self.volume(s, (128, 256, 256), 3)
        job = s.create_job({"volume_id": vid}, preview_hz=10,
                           engine_params={"window": 32}, **params)
        return vid, job["job_id"]

    def test_cancel_mid_run_stops_promptly_and_releases_everything(self):
        s = self.server()
        vid, job_id = self.big_job(s)

        async def go():
            ws = await ws_connect(s, job_id)
            try:
                while True:  # the segmenter is under way: a window landed
                    msg, _ = await recv_msg(ws, RUN_TIMEOUT)
                    if msg["type"] == "preview":
                        break
                    self.assertNotIn(msg["type"], ("completed", "error", "cancelled"), msg)
                # The loop stays responsive while every worker segments.
                for _ in range(5):
                    t0 = time.monotonic()
                    r = await asyncio.to_thread(s.get, "/v1/healthz")
                    self.assertEqual(r.status, 200)
                    self.assertLess(time.monotonic() - t0, 1.0 * SPEED_SCALE)
                t0 = time.monotonic()
                r = await asyncio.to_thread(s.request, "DELETE", "/v1/jobs/%s" % job_id)
                self.assertEqual(r.status, 200, r)
                self.assertLess(time.monotonic() - t0, 2.0 * SPEED_SCALE)
                while True:
                    msg, _ = await recv_msg(ws)
                    if msg["type"] == "cancelled":
                        break
                    self.assertIn(msg["type"], ("preview", "progress", "state"), msg)
                return msg
            finally:
                await ws.close()

        cancelled = asyncio.run(go())
        self.assertLess(cancelled["data"]["progress"], 0.95)
        # Every window in flight lands, then the run lets go of its files:
        # nothing of the volume or the mask stays mapped or open.
        needles = [vid, job_id]
        poll(lambda: not references(s.proc.pid, needles), EV * SPEED_SCALE,
             "the run to release the volume and the mask")
        artifacts = os.path.join(s.state_dir, "artifacts")
        poll(lambda: not [n for n in os.listdir(artifacts) if job_id in n], EV,
             "the mask file to be removed")
        job = s.job(job_id)
        self.assertEqual(job["state"], "cancelled")
        self.assertEqual(job["artifacts"], [])
        self.assertEqual(job["progress"], cancelled["data"]["progress"])  # nothing after
        sent = job["previews_sent"]
        # The server runs the next job at once: the workers came back.
        vid2, _ = self.volume(s, (32, 48, 48), 5)
        nxt = s.create_job({"volume_id": vid2})
        self.completed(s, nxt["job_id"])
        self.assertEqual(s.job(job_id)["previews_sent"], sent)
        s.assert_healthy()
        # A clean exit (a sanitizer build checks for leaks there; cleanup
        # fails on any report).
        self.assertEqual(s.stop(), 0, s.stderr_tail())

    def test_server_stop_mid_run_exits_cleanly(self):
        s = self.server()
        _, job_id = self.big_job(s)
        poll(lambda: s.job(job_id)["progress"] > 0, RUN_TIMEOUT, "a window to land")
        self.assertEqual(s.stop(timeout=STOP_TIMEOUT * SPEED_SCALE), 0, s.stderr_tail())
        again = Server(state_dir=s.state_dir, data_root=s.data_root).start()
        self.addCleanup(again.cleanup)
        job = again.job(job_id)
        self.assertEqual(job["state"], "failed")
        self.assertEqual(job["errors"][0]["code"], "interrupted")


class RulesTest(ClassicCase):
    def test_bad_engine_params_are_400_naming_the_parameter(self):
        s = self.server()
        vid, _ = self.volume(s, (16, 16, 16), 1)
        for params, name in (({"sigma": 100}, "sigma"), ({"sigma": "1"}, "sigma"),
                             ({"window": 2}, "window"), ({"window": 64.5}, "window"),
                             ({"min_voxels": -1}, "min_voxels"),
                             ({"dense_is_bright": 1}, "dense_is_bright"),
                             ({"edge_fraction": 1.5}, "edge_fraction"),
                             ({"sheet_radius": 0}, "sheet_radius"),
                             ({"nope": 1}, "nope")):
            r = s.request("POST", "/v1/jobs",
                          body={"volume_id": vid,
                                "params": {"engine": "classic", "engine_params": params}})
            e = assert_error(self, r, 400, "invalid_field", retryable=False)
            self.assertIn(name, e["message"], params)
        # Without naming the engine, the default (classic) checks them too.
        r = s.request("POST", "/v1/jobs", body={"volume_id": vid,
                                                "engine_params": {"sigma": -1}})
        assert_error(self, r, 400, "invalid_field")
        self.assertEqual(s.get("/v1/jobs").json["total"], 0)

    def test_classic_without_a_volume_is_400(self):
        s = self.server()
        r = s.request("POST", "/v1/jobs", body={"volume": {"shape": [8, 8, 8]},
                                                "params": {"engine": "classic"}})
        assert_error(self, r, 400, "engine_needs_volume")

    def test_default_engine_classic_for_volumes_sim_for_shapes(self):
        s = self.server()
        vid, _ = self.volume(s, (16, 24, 24), 1)
        shape_only = s.create_job({"volume": {"shape": [8, 8, 8]}}, duration_s=0)
        self.assertNotIn("engine", shape_only["params"])  # sim, as ever
        self.assertEqual(s.create_job({"volume_id": vid})["params"]["engine"], "classic")
        named = s.create_job({"volume_id": vid}, engine="sim", duration_s=0)
        self.assertNotIn("engine", named["params"])
        off = self.server("--builtin-engines", "sim")
        vid2, _ = self.volume(off, (16, 24, 24), 1)
        self.assertNotIn("engine", off.create_job({"volume_id": vid2}, duration_s=0)["params"])

    def test_cli_submit_uploads_and_passes_engine_params(self):
        s = self.server()
        path = os.path.join(self.tmp, "cli.mrc")
        phantom(path, (24, 32, 32), 8)

        def submit(*args):
            return subprocess.run([CLI, "--server", s.base, "--json", "submit", path] + list(args),
                                  capture_output=True, text=True, timeout=EV * 4)
        r = submit("--engine-params", '{"window":16,"sigma":1.5}', "--downsample", "max")
        self.assertEqual(r.returncode, 0, r.stderr)
        job = json.loads(r.stdout)
        self.assertEqual(job["params"]["engine"], "classic")  # the server's default
        self.assertEqual(job["params"]["engine_params"], {"window": 16, "sigma": 1.5})
        self.assertEqual(job["params"]["preview_downsample"], "max")
        self.assertEqual(self.completed(s, job["job_id"])["stats"]["engine"]["windows"], 8)
        r = submit("--engine-params", "[1]")
        self.assertEqual(r.returncode, 64, r.stderr)  # a usage error, nothing sent
        r = submit("--engine-params", '{"sigma":99}')
        self.assertEqual(r.returncode, 4, r.stderr)  # the server's 400
        self.assertIn("sigma", r.stderr)
        r = submit("--pattern", "blobs", "--duration", "0")  # sim's options: sim
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("engine", json.loads(r.stdout)["params"])

    def test_no_memory_for_a_scratch_fails_retryable_and_the_server_goes_on(self):
        import resource
        s = self.server()
        vid, _ = self.volume(s, (160, 160, 160), 9)

        def vm_bytes():
            with open("/proc/%d/status" % s.proc.pid) as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        if vm_bytes() > 1 << 40:
            self.skipTest("a sanitizer build reserves terabytes of address space")
        # Room for the mask's mapping (4 MB; the volume is read, not
        # mapped) and the statistics, not for one worker's scratch (a 160^3
        # box: ~70 MB).
        resource.prlimit(s.proc.pid, resource.RLIMIT_AS, (vm_bytes() + (48 << 20),
                                                          resource.RLIM_INFINITY))
        job = s.create_job({"volume_id": vid}, engine_params={"window": 256})
        done = s.wait_state(job["job_id"], ("completed", "failed"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "failed")
        err = done["errors"][0]
        self.assertEqual(err["code"], "insufficient_memory", err)
        self.assertTrue(err["retryable"])
        self.assertIn("MiB of scratch", err["message"])
        resource.prlimit(s.proc.pid, resource.RLIMIT_AS,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        again = s.create_job({"volume_id": vid}, engine_params={"window": 256})
        self.assertEqual(self.completed(s, again["job_id"])["stats"]["engine"]["windows"], 1)
        s.assert_healthy()

    def test_a_volume_deleted_before_its_job_starts_fails_it(self):
        s = self.server()  # --max-running 1: the second job waits
        big, _ = self.volume(s, (128, 256, 256), 3)
        first = s.create_job({"volume_id": big}, engine_params={"window": 32})["job_id"]
        vid, _ = self.volume(s, (16, 24, 24), 1)
        second = s.create_job({"volume_id": vid})["job_id"]
        self.assertEqual(s.job(second)["state"], "queued")
        self.assertEqual(s.request("DELETE", "/v1/volumes/%s" % vid).status, 200)
        self.assertEqual(s.request("DELETE", "/v1/jobs/%s" % first).status, 200)
        done = s.wait_state(second, ("completed", "failed"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "failed")
        err = done["errors"][0]
        self.assertEqual(err["code"], "engine_failed", err)
        self.assertIn("volume %s" % vid, err["message"])
        self.assertIn("deleted", err["message"])
        self.assertNotIn(s.state_dir, err["message"])  # no server paths
        s.assert_healthy()

    def test_one_worker_shared_by_two_jobs(self):
        s = self.server("--classic-workers", "1", "--max-running", "2")
        self.assertEqual(s.get("/v1/server/info").json["limits"]["classic_workers"], 1)
        vid, _ = self.volume(s, (64, 64, 96), 6)
        a = s.create_job({"volume_id": vid}, engine_params={"window": 32})
        b = s.create_job({"volume_id": vid}, engine_params={"window": 32})
        da, db = self.completed(s, a["job_id"]), self.completed(s, b["job_id"])
        self.assertEqual(da["stats"]["engine"]["workers"], 1)
        self.assertEqual(db["stats"]["engine"]["workers"], 1)
        self.assertEqual(self.artifact(s, a["job_id"]), self.artifact(s, b["job_id"]))


class ChangedVolumeTest(ClassicCase):
    """A volume_path file is the operator's: truncated or rewritten while a
    job reads it, the job fails volume_changed and the server goes on (the
    volume is read with pread, never mapped: no SIGBUS). An uploaded
    volume deleted mid-run is the server's own file: the run keeps its
    descriptor and completes as if nothing happened."""

    BIG = (128, 256, 256)  # 256 windows of 32: seconds, on every worker

    def big_path_job(self, s, name):
        """The big phantom copied to the data root as `name`, and a job on it
        that has started segmenting (a window landed): (its path, job id)."""
        src = os.path.join(self.tmp, "big.mrc")
        if not os.path.exists(src):
            phantom(src, self.BIG, 3)
        path = os.path.join(s.data_root, name)
        with open(src, "rb") as f, open(path, "wb") as g:
            g.write(f.read())
        job_id = s.create_job({"volume_path": name}, preview_hz=10,
                              engine_params={"window": 32})["job_id"]
        poll(lambda: s.job(job_id)["progress"] > 0, RUN_TIMEOUT, "a window to land")
        return path, job_id

    def failed_changed(self, s, job_id, name, words):
        done = s.wait_state(job_id, ("completed", "failed", "cancelled"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "failed", done)
        err = done["errors"][0]
        self.assertEqual(err["code"], "volume_changed", err)
        self.assertFalse(err["retryable"])
        self.assertIn("volume_path '%s' changed while the job read it" % name, err["message"])
        self.assertIn(words, err["message"])
        self.assertNotIn(s.data_root, err["message"])  # no server paths
        self.assertLess(done["progress"], 1)
        self.assertEqual(done["artifacts"], [])
        return err

    def goes_on(self, s, needles):
        """The server is alive and answers, holds nothing of `needles` open
        or mapped, and runs the next job."""
        self.assertIsNone(s.proc.poll(), "the server died")
        s.assert_healthy()
        poll(lambda: not references(s.proc.pid, needles), EV * SPEED_SCALE,
             "the run to release the volume and the mask")
        phantom(os.path.join(s.data_root, "next.mrc"), (32, 48, 48), 5)
        nxt = s.create_job({"volume_path": "next.mrc"})
        self.completed(s, nxt["job_id"])
        s.assert_healthy()

    def test_a_volume_path_truncated_mid_run_fails_the_job_not_the_server(self):
        s = self.server()
        path, job_id = self.big_path_job(s, "cut.mrc")
        # Half of it is gone: the windows still to come read past the end.
        os.truncate(path, os.path.getsize(path) // 2)
        self.failed_changed(s, job_id, "cut.mrc", "shorter than its header says")
        self.goes_on(s, ["cut.mrc", job_id])
        self.assertEqual(s.stop(), 0, s.stderr_tail())

    def test_a_volume_path_rewritten_in_place_mid_run_fails_the_job(self):
        s = self.server()
        path, job_id = self.big_path_job(s, "rewritten.mrc")
        # Same size, other voxels (a write in place, as a careless copy
        # over the file would make): a mask of two files is no result.
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\x7f" * 4096)
        self.failed_changed(s, job_id, "rewritten.mrc", "modification time")
        self.goes_on(s, ["rewritten.mrc", job_id])

    def test_a_volume_path_cut_before_its_job_starts_fails_it(self):
        s = self.server()  # --max-running 1: the second job waits
        big, _ = self.volume(s, (128, 256, 256), 3)
        first = s.create_job({"volume_id": big}, engine_params={"window": 32})["job_id"]
        phantom(os.path.join(s.data_root, "small.mrc"), (16, 24, 24), 1)
        second = s.create_job({"volume_path": "small.mrc"})["job_id"]
        self.assertEqual(s.job(second)["state"], "queued")
        os.truncate(os.path.join(s.data_root, "small.mrc"), 100)
        self.assertEqual(s.request("DELETE", "/v1/jobs/%s" % first).status, 200)
        done = s.wait_state(second, ("completed", "failed"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "failed")
        err = done["errors"][0]
        self.assertEqual(err["code"], "volume_changed", err)
        self.assertIn("volume_path 'small.mrc'", err["message"])
        self.assertIn("shorter than an MRC header", err["message"])
        self.goes_on(s, ["small.mrc", second])

    def test_an_uploaded_volume_deleted_mid_run_completes_as_untouched(self):
        s = self.server()
        vid, src = self.volume(s, self.BIG, 3)
        job_id = s.create_job({"volume_id": vid}, preview_hz=10,
                              engine_params={"window": 32})["job_id"]
        poll(lambda: s.job(job_id)["progress"] > 0, RUN_TIMEOUT, "a window to land")
        self.assertEqual(s.request("DELETE", "/v1/volumes/%s" % vid).status, 200)
        self.assertEqual(s.request("GET", "/v1/volumes/%s" % vid).status, 404)
        # The run holds the file's descriptor: the unlinked inode stays.
        held = references(s.proc.pid, [vid + ".mrc"])
        self.assertTrue(held and all("(deleted)" in r for r in held), held)
        done = self.completed(s, job_id)
        mask = self.artifact(s, job_id)
        poll(lambda: not references(s.proc.pid, [vid + ".mrc"]), EV * SPEED_SCALE,
             "the run to close the deleted volume")
        # The same bytes uploaded again and segmented untouched give the
        # same mask.
        with open(src, "rb") as f:
            again = upload(s, f.read())
        ref = s.create_job({"volume_id": again}, engine_params={"window": 32})
        self.completed(s, ref["job_id"])
        self.assertEqual(self.artifact(s, ref["job_id"]), mask)
        self.assertEqual(done["stats"]["engine"]["windows"], 256)
        s.assert_healthy()


if __name__ == "__main__":
    main()
