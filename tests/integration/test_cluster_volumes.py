"""test_cluster_volumes.py: --shared-dir (docs/operations.md "Cluster"): a
private redis-server, two gateways and one worker on loopback sharing a
temporary directory. A phantom uploaded with tus on gateway A becomes a
volume every gateway sees (its record in Redis, its file in
shared/volumes/); a classic job on it created on gateway B runs on the
worker, whose artifact (shared/artifacts/) downloaded from gateway A is
byte-identical to what a --role all server computes for the same volume.
Job and volume lists agree across gateways, page for page; a purge or a
volume's DELETE on one gateway removes keys and files for all. A worker
killed -9 while it writes an artifact leaves no artifact visible. A shared
directory that is missing or not writable stops the server at start."""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_classic import phantom, upload  # noqa: E402
from test_cluster import metric, poll  # noqa: E402

RUN_TIMEOUT = 120 * harness.SPEED_SCALE
QUICK = {"volume": {"shape": [8, 8, 8]},
         "params": {"engine": "sim", "duration_s": 0, "preview_hz": 10}}


def wait_connected(gateways, workers):
    for s in list(gateways) + list(workers):
        poll(lambda: metric(s, "cryomamba_redis_connected") == 1,
             what="redis connected on %d" % s.port)
    for w in workers:
        poll(lambda: metric(w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")


def list_all(server, what, limit, extra=""):
    """Every page of GET /v1/<what> (ids in order) by following cursors."""
    ids, cursor, pages = [], None, 0
    while True:
        q = "/v1/%s?limit=%d%s" % (what, limit, extra)
        if cursor:
            q += "&cursor=" + cursor
        r = server.get(q)
        assert r.status == 200, r
        items = r.json[what]
        assert r.json["count"] == len(items), r.json
        ids += [x["job_id" if what == "jobs" else "volume_id"] for x in items]
        pages += 1
        cursor = r.json.get("next_cursor")
        if not cursor:
            return ids, pages, r.json["total"]
        assert cursor == ids[-1]


class SharedDirTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-shared-")
        cls.shared = os.path.join(cls.tmp, "shared")
        os.makedirs(cls.shared)
        cls.data = os.path.join(cls.tmp, "data")  # the same --data-root for all
        os.makedirs(cls.data)
        cls.redis = Redis().start()
        args = ["--redis", cls.redis.url, "--shared-dir", cls.shared]
        cls.a = harness.Server(["--role", "gateway"] + args, data_root=cls.data).start()
        cls.b = harness.Server(["--role", "gateway"] + args, data_root=cls.data).start()
        cls.w = harness.Server(["--role", "worker"] + args, data_root=cls.data).start()
        cls.ref = harness.Server([]).start()  # --role all, for the reference
        cls.servers = (cls.a, cls.b, cls.w, cls.ref)

    @classmethod
    def tearDownClass(cls):
        try:
            for s in cls.servers:
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in cls.servers:
                s.cleanup()
            cls.redis.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        wait_connected((self.a, self.b), (self.w,))

    def phantom_bytes(self, shape, seed):
        path = os.path.join(self.tmp, "ph-%d.mrc" % seed)
        phantom(path, shape, seed)
        with open(path, "rb") as f:
            return f.read()

    def artifact(self, s, jid):
        r = s.get("/v1/jobs/%s/artifacts/mask.mrc" % jid, timeout=harness.EV * 4)
        self.assertEqual(r.status, 200, r)
        return r.body

    def completed(self, s, jid):
        done = s.wait_state(jid, ("completed", "failed", "cancelled"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "completed", done.get("errors"))
        return done

    def test_volume_uploaded_on_a_job_on_b_artifact_on_a_equals_role_all(self):
        data = self.phantom_bytes((40, 48, 56), seed=3)
        vid = upload(self.a, data)
        self.assertTrue(vid)
        # The volume's file is on the shared directory, its record in Redis,
        # the upload's own bytes under A's directory of uploads/.
        path = os.path.join(self.shared, "volumes", vid + ".mrc")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertTrue(self.redis.cli("HGET", "cm:vol:" + vid, "record"))
        nodes = os.listdir(os.path.join(self.shared, "uploads"))
        self.assertEqual(len(nodes), 2, nodes)  # one directory per gateway
        on_b = self.b.get("/v1/volumes/" + vid)
        self.assertEqual(on_b.status, 200, on_b)
        self.assertEqual(on_b.json["shape"], [40, 48, 56])
        self.assertNotIn("created_us", on_b.json)
        self.assertEqual(on_b.json, self.a.get("/v1/volumes/" + vid).json)
        listed = self.b.get("/v1/volumes").json
        self.assertIn(vid, [v["volume_id"] for v in listed["volumes"]])

        job = self.b.create_job({"volume_id": vid}, engine="classic")
        self.assertEqual(job["volume"]["shape"], [40, 48, 56])
        done = self.completed(self.a, job["job_id"])
        art = self.artifact(self.a, job["job_id"])
        self.assertEqual(len(art), done["artifacts"][0]["bytes"])
        r = self.b.request("HEAD", "/v1/jobs/%s/artifacts/mask.mrc" % job["job_id"])
        self.assertEqual((r.status, int(r.header("Content-Length"))), (200, len(art)))

        rvid = upload(self.ref, data)
        rjob = self.ref.create_job({"volume_id": rvid}, engine="classic")
        self.completed(self.ref, rjob["job_id"])
        ref_art = self.artifact(self.ref, rjob["job_id"])
        self.assertEqual(art, ref_art, "the cluster's artifact differs from --role all's")
        _, mask, _ = harness.read_mrc(art)
        self.assertEqual(mask.shape, (40, 48, 56))

    def test_volume_path_under_the_common_data_root(self):
        data = self.phantom_bytes((24, 24, 32), seed=7)
        with open(os.path.join(self.data, "ph7.mrc"), "wb") as f:
            f.write(data)
        by_path = self.a.create_job({"volume_path": "ph7.mrc"}, engine="classic")
        self.assertEqual(by_path["volume"]["shape"], [24, 24, 32])
        by_id = self.b.create_job({"volume_id": upload(self.b, data)}, engine="classic")
        self.completed(self.b, by_path["job_id"])
        self.completed(self.a, by_id["job_id"])
        self.assertEqual(self.artifact(self.b, by_path["job_id"]),
                         self.artifact(self.a, by_id["job_id"]))
        r = self.a.request("POST", "/v1/jobs", body={"volume_path": "../etc/passwd"})
        harness.assert_error(self, r, 400, "invalid_volume_path")

    def test_lists_agree_across_gateways_page_for_page(self):
        jids = []
        for i in range(7):
            s = (self.a, self.b)[i % 2]
            jids.append(s.create_job(QUICK)["job_id"])
        for jid in jids:
            self.completed(self.a, jid)
        ids_a, pages_a, total_a = list_all(self.a, "jobs", 3)
        ids_b, pages_b, total_b = list_all(self.b, "jobs", 3)
        self.assertEqual(ids_a, ids_b)
        self.assertEqual(total_a, total_b)
        self.assertEqual(len(ids_a), total_a)
        self.assertEqual(len(set(ids_a)), len(ids_a))
        # Newest first: our jobs in reverse order of creation.
        mine = [j for j in ids_a if j in jids]
        self.assertEqual(mine, list(reversed(jids)))
        # One page at a time on alternating gateways gives the same sequence.
        r = self.a.get("/v1/jobs?limit=2").json
        r2 = self.b.get("/v1/jobs?limit=2&cursor=" + r["next_cursor"]).json
        self.assertEqual([j["job_id"] for j in r["jobs"] + r2["jobs"]], ids_a[:4])
        # A state filter, as on --role all.
        done, _, _ = list_all(self.b, "jobs", 2, "&state=completed")
        self.assertTrue(set(jids) <= set(done))
        self.assertEqual(self.a.get("/v1/jobs?state=running&limit=1000").json["count"],
                         len([j for j in ids_a if self.a.job(j)["state"] == "running"]))
        harness.assert_error(self, self.a.get("/v1/jobs?cursor=" + harness.new_uuid()), 400,
                             "invalid_cursor")
        harness.assert_error(self, self.b.get("/v1/jobs?cursor=nonsense"), 400, "invalid_cursor")
        harness.assert_error(self, self.b.get("/v1/jobs?limit=0"), 400, "invalid_field")
        harness.assert_error(self, self.b.get("/v1/jobs?state=done"), 400, "invalid_field")

    def test_purge_on_b_removes_the_job_everywhere(self):
        jid = self.a.create_job(QUICK)["job_id"]
        self.completed(self.b, jid)
        art = os.path.join(self.shared, "artifacts", jid + "-mask.mrc")
        self.assertTrue(os.path.exists(art))
        self.assertEqual(len(self.artifact(self.a, jid)), os.path.getsize(art))
        # Without purge a finished job is 409, as on --role all.
        harness.assert_error(self, self.b.request("DELETE", "/v1/jobs/" + jid), 409,
                             "job_finished")
        r = self.b.request("DELETE", "/v1/jobs/%s?purge=1" % jid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"job_id": jid, "status": "deleted"})
        self.assertFalse(os.path.exists(art))  # removed before the 200
        for s in (self.a, self.b):
            harness.assert_error(self, s.get("/v1/jobs/" + jid), 404, "job_not_found")
            harness.assert_error(self, s.get("/v1/jobs/%s/artifacts/mask.mrc" % jid), 404,
                                 "job_not_found")
            self.assertNotIn(jid, list_all(s, "jobs", 1000)[0])
        for k in ("job", "state", "prev", "term"):
            self.assertEqual(self.redis.cli("EXISTS", "cm:%s:%s" % (k, jid)), "0", k)
        self.assertEqual(self.redis.cli("ZSCORE", "cm:jobs:index", jid), "")
        harness.assert_error(self, self.a.request("DELETE", "/v1/jobs/%s?purge=1" % jid), 404,
                             "job_not_found")

    def test_active_job_is_not_purged_and_artifact_is_409_until_completed(self):
        job = self.a.create_job({"volume": {"shape": [16, 16, 16]},
                                 "params": {"engine": "sim", "duration_s": 3.0}})
        jid = job["job_id"]
        r = self.b.request("DELETE", "/v1/jobs/%s?purge=1" % jid)
        harness.assert_error(self, r, 409, "job_active")
        harness.assert_error(self, self.a.get("/v1/jobs/%s/artifacts/mask.mrc" % jid), 409,
                             "job_not_completed", retryable=True)
        harness.assert_error(self, self.a.get("/v1/jobs/%s/artifacts/other" % jid), 404,
                             "artifact_not_found")
        self.completed(self.b, jid)
        self.assertTrue(self.artifact(self.b, jid))

    def test_volume_delete_on_b_removes_it_everywhere(self):
        vid = upload(self.a, self.phantom_bytes((8, 8, 8), seed=5))
        path = os.path.join(self.shared, "volumes", vid + ".mrc")
        self.assertTrue(os.path.exists(path))
        ids, _, total = list_all(self.b, "volumes", 1)
        self.assertIn(vid, ids)
        self.assertEqual(ids[0], vid)  # newest first
        self.assertEqual(len(ids), total)
        r = self.b.request("DELETE", "/v1/volumes/" + vid)
        self.assertEqual(r.status, 200, r)
        self.assertFalse(os.path.exists(path))
        for s in (self.a, self.b):
            harness.assert_error(self, s.get("/v1/volumes/" + vid), 404, "volume_not_found")
            self.assertNotIn(vid, list_all(s, "volumes", 1000)[0])
        harness.assert_error(self, self.a.request("DELETE", "/v1/volumes/" + vid), 404,
                             "volume_not_found")
        r = self.a.request("POST", "/v1/jobs", body={"volume_id": vid})
        harness.assert_error(self, r, 404, "volume_not_found")
        harness.assert_error(self, self.a.get("/v1/volumes/x"), 400, "invalid_volume_id")
        harness.assert_error(self, self.a.get("/v1/volumes?cursor=" + vid), 400,
                             "invalid_cursor")

    def test_upload_resumes_on_its_gateway_and_is_unknown_on_the_other(self):
        data = self.phantom_bytes((8, 16, 16), seed=6)
        tus = {"Tus-Resumable": "1.0.0"}
        r = self.a.request("POST", "/v1/uploads",
                           headers=dict(tus, **{"Upload-Length": str(len(data))}))
        self.assertEqual(r.status, 201, r)
        url = r.header("Location")
        patch = dict(tus, **{"Content-Type": "application/offset+octet-stream"})
        r = self.a.request("PATCH", url, raw=data[:1000],
                           headers=dict(patch, **{"Upload-Offset": "0"}))
        self.assertEqual(r.status, 204, r)
        # Its progress is the gateway's own (documented): another gateway
        # does not know it, and a tus client starts over there.
        self.assertEqual(self.b.request("HEAD", url, headers=tus).status, 404)
        r = self.a.request("HEAD", url, headers=tus)
        self.assertEqual(r.header("Upload-Offset"), "1000")
        r = self.a.request("PATCH", url, raw=data[1000:],
                           headers=dict(patch, **{"Upload-Offset": "1000"}))
        self.assertEqual(r.status, 204, r)
        vid = r.header("CryoMamba-Volume-Id")
        self.assertEqual(self.b.get("/v1/volumes/" + vid).json["size_bytes"], len(data))
        # A worker serves no uploads.
        r = self.w.request("POST", "/v1/uploads",
                           headers=dict(tus, **{"Upload-Length": "10"}))
        harness.assert_error(self, r, 404, "not_served_here")


class WorkerKilledTest(unittest.TestCase):
    """A worker killed -9 in the middle of writing an artifact: the
    artifact's temporary is a named pipe the test holds, so the kill lands
    while bytes are being written, before the rename."""

    def test_kill9_before_the_rename_leaves_no_artifact(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-shared-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = Redis().start()
        self.addCleanup(redis.stop)
        args = ["--redis", redis.url, "--shared-dir", tmp]
        gw = harness.Server(["--role", "gateway"] + args).start()
        self.addCleanup(gw.cleanup)
        w = harness.Server(["--role", "worker"] + args).start()
        self.addCleanup(w.cleanup)
        wait_connected((gw,), (w,))
        job = gw.create_job({"volume": {"shape": [64, 64, 64]},
                             "params": {"engine": "sim", "duration_s": 2.0}})
        jid = job["job_id"]
        fifo = os.path.join(tmp, "artifacts", jid + "-mask.mrc.tmp")
        os.mkfifo(fifo)
        rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, rd)
        got = b""
        deadline = time.monotonic() + RUN_TIMEOUT
        while not got and time.monotonic() < deadline:
            ready, _, _ = select.select([rd], [], [], 0.5)
            if ready:
                try:
                    got = os.read(rd, 4096)
                except BlockingIOError:
                    pass
        self.assertTrue(got, "the worker never wrote the artifact")
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)
        # Not completed: no artifact is served, and none is on the shared
        # directory but the temporary (removed with the job).
        self.assertEqual(gw.job(jid)["state"], "running")
        harness.assert_error(self, gw.get("/v1/jobs/%s/artifacts/mask.mrc" % jid), 409,
                             "job_not_completed")
        self.assertFalse(os.path.exists(os.path.join(tmp, "artifacts", jid + "-mask.mrc")))
        self.assertEqual(gw.stop(), 0)


class RedisDownTest(unittest.TestCase):
    def test_redis_down_answers_503_and_a_completion_waits_for_it(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-shared-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = Redis().start()
        self.addCleanup(redis.stop)
        gw = harness.Server(["--role", "gateway", "--redis", redis.url,
                             "--shared-dir", tmp]).start()
        self.addCleanup(gw.cleanup)
        wait_connected((gw,), ())
        data = open_phantom(tmp, (8, 8, 8), 9)
        tus = {"Tus-Resumable": "1.0.0"}
        r = gw.request("POST", "/v1/uploads",
                       headers=dict(tus, **{"Upload-Length": str(len(data))}))
        url = r.header("Location")
        port = redis.port
        redis.kill()
        poll(lambda: metric(gw, "cryomamba_redis_connected") == 0, what="down seen")
        for path in ("/v1/jobs", "/v1/volumes", "/v1/volumes/" + harness.new_uuid(),
                     "/v1/jobs/%s/artifacts/mask.mrc" % harness.new_uuid()):
            harness.assert_error(self, gw.get(path), 503, "redis_unavailable", retryable=True)
        harness.assert_error(self, gw.request("DELETE", "/v1/jobs/%s?purge=1" %
                                              harness.new_uuid()), 503, "redis_unavailable")
        # All bytes in, but the volume cannot be recorded: no volume id is
        # acknowledged, the upload stays complete-able.
        patch = dict(tus, **{"Content-Type": "application/offset+octet-stream"})
        r = gw.request("PATCH", url, raw=data, headers=dict(patch, **{"Upload-Offset": "0"}))
        self.assertIsNone(r.header("CryoMamba-Volume-Id"), r)
        self.assertGreaterEqual(r.status, 500, r)
        redis.start(port=port)
        wait_connected((gw,), ())
        r = gw.request("PATCH", url, raw=b"",
                       headers=dict(patch, **{"Upload-Offset": str(len(data))}))
        self.assertEqual(r.status, 204, r)
        vid = r.header("CryoMamba-Volume-Id")
        self.assertEqual(gw.get("/v1/volumes/" + vid).json["size_bytes"], len(data))
        self.assertEqual(gw.stop(), 0)


def open_phantom(tmp, shape, seed):
    path = os.path.join(tmp, "ph-%d.mrc" % seed)
    phantom(path, shape, seed)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


class StartupTest(unittest.TestCase):
    def start_fails(self, shared, needle):
        s = harness.Server(["--role", "gateway", "--redis", "redis://127.0.0.1:1",
                            "--shared-dir", shared])
        self.addCleanup(s.cleanup)
        cmd = [harness.SERVER_BIN, "--port", "0", "--state-dir", s.state_dir] + s.args
        p = subprocess.run(cmd, capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertIn(needle, p.stderr.decode())

    def test_missing_or_unwritable_shared_dir_stops_the_start(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-shared-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.start_fails(os.path.join(tmp, "nope"), "it must exist")
        if os.geteuid() == 0:
            # root writes anywhere a mode allows: /proc takes no new file
            self.start_fails("/proc", "--shared-dir: cannot create")
        else:
            ro = os.path.join(tmp, "ro")
            os.makedirs(os.path.join(ro, "volumes"))
            os.chmod(ro, 0o555)
            os.chmod(os.path.join(ro, "volumes"), 0o555)
            self.addCleanup(os.chmod, ro, 0o755)
            self.start_fails(ro, "--shared-dir: cannot")

    def test_gateway_without_shared_dir_refuses_volume_jobs_clearly(self):
        redis = Redis().start()
        self.addCleanup(redis.stop)
        gw = harness.Server(["--role", "gateway", "--redis", redis.url]).start()
        self.addCleanup(gw.cleanup)
        wait_connected((gw,), ())
        for body in ({"volume_id": harness.new_uuid()}, {"volume_path": "x.mrc"}):
            r = gw.request("POST", "/v1/jobs", body=body)
            harness.assert_error(self, r, 400, "shared_dir_required")
            self.assertIn("--shared-dir", r.json["error"]["message"])
        for path in ("/v1/volumes", "/v1/jobs/%s/artifacts/mask.mrc" % harness.new_uuid()):
            harness.assert_error(self, gw.get(path), 501, "shared_dir_required")
        r = gw.request("POST", "/v1/uploads",
                       headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
        harness.assert_error(self, r, 501, "shared_dir_required")
        self.assertEqual(gw.stop(), 0)


if __name__ == "__main__":
    harness.main()
