"""test_cluster_storage.py: the cluster's storage (docs/operations.md
"Cluster"): a private redis-server, gateways A and B and a worker sharing
a temporary --shared-dir.
- GET /v1/jobs/{id}/preview on either gateway is cm:prev:<id> byte for
  byte (the latest base64 preview message), with --role all's 404s.
- Dedup by sha256 across gateways: a volume uploaded on A, the same file
  announced on B completes at once with A's volume id (the CLI sends 0
  bytes); two gateways completing the same bytes at once end with one
  volume; DELETE removes the index entry and a new upload works again.
- The storage quota counts the cluster's volumes and artifacts
  (cm:storage:used): uploads on A and B together are refused with 507
  past it, and a DELETE on either frees room.
- The sweep removes planted orphans (a volume file without a record, the
  temporaries and artifacts of ended or gone jobs) and keeps live files.
- Redis down: 503 and nothing half-done."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_classic import CLI, phantom, upload  # noqa: E402
from test_cluster import metric, poll  # noqa: E402
from test_cluster_volumes import RUN_TIMEOUT, wait_connected  # noqa: E402
from tus_util import meta  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = dict(TUS, **{"Content-Type": "application/offset+octet-stream"})


def phantom_bytes(tmp, shape, seed):
    path = os.path.join(tmp, "ph-%d-%d.mrc" % (seed, shape[0]))
    phantom(path, shape, seed)
    with open(path, "rb") as f:
        return f.read()


def post(s, length, sha=None):
    h = dict(TUS, **{"Upload-Length": str(length)})
    if sha:
        h["Upload-Metadata"] = meta(filename="x.mrc", sha256=sha)
    return s.request("POST", "/v1/uploads", headers=h)


def patch_all(s, url, data, offset=0):
    return s.request("PATCH", url, raw=data, timeout=harness.EV * 4,
                     headers=dict(PATCH, **{"Upload-Offset": str(offset)}))


def used(redis):
    return int(redis.cli("GET", "cm:storage:used") or 0)


def start_cluster(test, gateway_args=(), worker=True, n_gateways=2, durable=False):
    tmp = tempfile.mkdtemp(prefix="cryomamba-storage-")
    test.addCleanup(shutil.rmtree, tmp, True)
    shared = os.path.join(tmp, "shared")
    os.makedirs(shared)
    redis = Redis(appendonly=durable).start()
    test.addCleanup(redis.stop)
    args = ["--redis", redis.url, "--shared-dir", shared]
    gws = []
    for _ in range(n_gateways):
        g = harness.Server(["--role", "gateway"] + args + list(gateway_args)).start()
        test.addCleanup(g.cleanup)
        gws.append(g)
    ws = []
    if worker:
        w = harness.Server(["--role", "worker"] + args).start()
        test.addCleanup(w.cleanup)
        ws.append(w)
    wait_connected(gws, ws)
    return tmp, shared, redis, gws, ws


class PreviewDedupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-storage-")
        cls.shared = os.path.join(cls.tmp, "shared")
        os.makedirs(cls.shared)
        cls.redis = Redis().start()
        args = ["--redis", cls.redis.url, "--shared-dir", cls.shared]
        cls.a = harness.Server(["--role", "gateway"] + args).start()
        cls.b = harness.Server(["--role", "gateway"] + args).start()
        cls.w = harness.Server(["--role", "worker"] + args).start()
        cls.servers = (cls.a, cls.b, cls.w)

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

    def volume_files(self):
        return sorted(os.listdir(os.path.join(self.shared, "volumes")))

    def test_preview_over_rest_on_both_gateways_is_the_latest(self):
        shape = [12, 10, 8]
        job = self.a.create_job({"volume": {"shape": shape}},
                                engine="sim", duration_s=0.5, preview_hz=10, seed=4)
        jid = job["job_id"]
        done = self.b.wait_state(jid, ("completed", "failed"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "completed")
        stored = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--raw", "GET",
                                 "cm:prev:" + jid], capture_output=True, check=True).stdout
        stored = stored[:-1]  # --raw adds a newline
        self.assertTrue(stored)
        for s in (self.a, self.b):
            r = s.get("/v1/jobs/%s/preview" % jid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("Content-Type"), "application/json")
            self.assertEqual(r.body, stored)
            msg = json.loads(r.body)
            self.assertEqual(msg["type"], "preview")
            self.assertEqual(msg["job_id"], jid)
            raw = base64.b64decode(msg["data"]["payload"])
            self.assertEqual(len(raw), shape[0] * shape[1] * shape[2])
            h = s.request("HEAD", "/v1/jobs/%s/preview" % jid)
            self.assertEqual((h.status, int(h.header("Content-Length")), h.body),
                             (200, len(stored), b""))
        harness.assert_error(self, self.b.get("/v1/jobs/%s/preview" % harness.new_uuid()),
                             404, "job_not_found")
        harness.assert_error(self, self.a.get("/v1/jobs/nope/preview"), 400, "invalid_job_id")
        r = self.a.request("POST", "/v1/jobs/%s/preview" % jid)
        self.assertEqual(r.status, 405, r)
        # A purged job's preview is gone with it, on every gateway.
        self.assertEqual(self.b.request("DELETE", "/v1/jobs/%s?purge=1" % jid).status, 200)
        harness.assert_error(self, self.a.get("/v1/jobs/%s/preview" % jid), 404,
                             "job_not_found")

    def test_artifact_bytes_are_counted_once_and_freed_by_the_purge(self):
        before = used(self.redis)
        job = self.a.create_job({"volume": {"shape": [16, 16, 16]}},
                                engine="sim", duration_s=0)
        jid = job["job_id"]
        done = self.a.wait_state(jid, ("completed", "failed"), timeout=RUN_TIMEOUT)
        self.assertEqual(done["state"], "completed")
        n = done["artifacts"][0]["bytes"]
        self.assertGreater(n, 0)
        self.assertEqual(int(self.redis.cli("HGET", "cm:job:" + jid, "storage_bytes")), n)
        self.assertEqual(used(self.redis), before + n)
        self.assertEqual(self.b.request("DELETE", "/v1/jobs/%s?purge=1" % jid).status, 200)
        self.assertEqual(used(self.redis), before)

    def test_dedup_across_gateways_the_cli_sends_nothing(self):
        data = phantom_bytes(self.tmp, (8, 16, 24), seed=11)
        sha = hashlib.sha256(data).hexdigest()
        before = used(self.redis)
        vid = upload(self.a, data)
        self.assertEqual(self.redis.cli("GET", "cm:vol:sha256:" + sha), vid)
        self.assertEqual(used(self.redis), before + len(data))
        # The CLI on B announces the sha256: 0 bytes sent, A's volume.
        path = os.path.join(self.tmp, "same.mrc")
        with open(path, "wb") as f:
            f.write(data)
        env = dict(os.environ, CRYOMAMBA_SERVER=self.b.base)
        out = subprocess.run([CLI, "--json", "upload", path], capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, env=env, stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 0, out.stderr)
        v = json.loads(out.stdout)
        self.assertEqual(v["volume_id"], vid)
        self.assertTrue(v["upload"]["deduplicated"])
        self.assertEqual(v["upload"]["bytes_sent"], 0)
        self.assertIn("already has this file", out.stderr)
        # The same over raw tus on B: complete at creation.
        r = post(self.b, len(data), sha)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("Upload-Offset"), str(len(data)))
        self.assertEqual(r.header("CryoMamba-Volume-Id"), vid)
        # Unannounced, all bytes sent to B: the completion finds A's volume
        # (one script), B's own link goes.
        self.assertEqual(upload(self.b, data), vid)
        poll(lambda: self.volume_files().count(vid + ".mrc") == 1 and
             len([x for x in self.volume_files()]) ==
             int(self.redis.cli("ZCARD", "cm:vols")), what="the duplicate link removed")
        self.assertEqual(used(self.redis), before + len(data))  # counted once
        # Deleted on B: the index entry goes with it; the bytes again make a
        # new volume (the announced sha256 no longer completes at once).
        self.assertEqual(self.b.request("DELETE", "/v1/volumes/" + vid).status, 200)
        self.assertEqual(self.redis.cli("EXISTS", "cm:vol:sha256:" + sha), "0")
        self.assertEqual(used(self.redis), before)
        r = post(self.a, len(data), sha)
        self.assertEqual((r.status, r.header("Upload-Offset")), (201, "0"), r)
        r = patch_all(self.a, r.header("Location"), data)
        self.assertEqual(r.status, 204, r)
        vid2 = r.header("CryoMamba-Volume-Id")
        self.assertNotEqual(vid2, vid)
        self.assertEqual(self.redis.cli("GET", "cm:vol:sha256:" + sha), vid2)
        self.assertEqual(self.b.get("/v1/volumes/" + vid2).json["sha256"], sha)

    def test_same_bytes_completed_on_two_gateways_at_once_make_one_volume(self):
        data = phantom_bytes(self.tmp, (16, 16, 16), seed=12)
        sha = hashlib.sha256(data).hexdigest()
        urls = []
        for s in (self.a, self.b):
            r = post(s, len(data))
            self.assertEqual(r.status, 201, r)
            urls.append((s, r.header("Location")))
        got = {}

        def send(i, s, url):
            got[i] = patch_all(s, url, data)

        threads = [threading.Thread(target=send, args=(i, s, u))
                   for i, (s, u) in enumerate(urls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RUN_TIMEOUT)
        self.assertEqual([got[i].status for i in (0, 1)], [204, 204], got)
        ids = {got[i].header("CryoMamba-Volume-Id") for i in (0, 1)}
        self.assertEqual(len(ids), 1, ids)
        vid = ids.pop()
        self.assertEqual(self.redis.cli("GET", "cm:vol:sha256:" + sha), vid)
        listed = [v for v in self.a.get("/v1/volumes?limit=1000").json["volumes"]
                  if v["sha256"] == sha]
        self.assertEqual([v["volume_id"] for v in listed], [vid])
        poll(lambda: len(self.volume_files()) == int(self.redis.cli("ZCARD", "cm:vols")),
             what="no file without a record")


class QuotaTest(unittest.TestCase):
    def test_quota_counts_both_gateways_and_a_delete_frees_room(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-storage-")
        self.addCleanup(shutil.rmtree, tmp, True)
        d = [phantom_bytes(tmp, (8, 8, 8), seed=s) for s in (1, 2, 3)]
        size = len(d[0])
        quota = size * 5 // 2  # room for two volumes, not three
        _, _, redis, (a, b), _ = start_cluster(
            self, ["--storage-quota-bytes", str(quota)], worker=False)
        va = upload(a, d[0])
        vb = upload(b, d[1])
        self.assertEqual(used(redis), 2 * size)
        for s in (a, b):
            r = post(s, size)
            harness.assert_error(self, r, 507, "insufficient_storage", retryable=False)
            self.assertIn("cluster", r.json["error"]["message"])
        # A duplicate is not refused: it stores nothing.
        r = post(b, size, hashlib.sha256(d[0]).digest().hex())
        self.assertEqual((r.status, r.header("CryoMamba-Volume-Id")), (201, va), r)
        # An upload reserved on A counts there too.
        self.assertEqual(b.request("DELETE", "/v1/volumes/" + vb).status, 200)
        self.assertEqual(used(redis), size)
        r = post(a, size)
        self.assertEqual(r.status, 201, r)
        harness.assert_error(self, post(a, size), 507, "insufficient_storage")
        self.assertEqual(patch_all(a, r.header("Location"), d[2]).status, 204)
        self.assertEqual(used(redis), 2 * size)
        harness.assert_error(self, post(b, size), 507, "insufficient_storage")

    def test_patch_sees_what_other_gateways_stored(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-storage-")
        self.addCleanup(shutil.rmtree, tmp, True)
        d = [phantom_bytes(tmp, (8, 8, 8), seed=s) for s in (4, 5, 6)]
        size = len(d[0])
        quota = size * 5 // 2
        _, _, redis, (a, b), _ = start_cluster(
            self, ["--storage-quota-bytes", str(quota)], worker=False)
        # Reserved on A while the cluster is empty; then B fills the quota.
        r = post(a, size)
        self.assertEqual(r.status, 201, r)
        url = r.header("Location")
        upload(b, d[0])
        upload(b, d[1])
        self.assertEqual(used(redis), 2 * size)
        # A reads the counter again within about a second: its PATCH would
        # take the cluster past the quota.
        poll(lambda: metric(a, "cryomamba_cluster_storage_used_bytes") == 2 * size,
             what="A's view of the counter")
        r = patch_all(a, url, d[2])
        harness.assert_error(self, r, 507, "insufficient_storage", retryable=False)
        vid = b.get("/v1/volumes").json["volumes"][0]["volume_id"]
        self.assertEqual(a.request("DELETE", "/v1/volumes/" + vid).status, 200)
        poll(lambda: metric(a, "cryomamba_cluster_storage_used_bytes") == size,
             what="A's view after the delete")
        self.assertEqual(patch_all(a, url, d[2]).status, 204)


class RedisDownTest(unittest.TestCase):
    def test_redis_down_503_and_nothing_half_done(self):
        tmp, shared, redis, (a,), _ = start_cluster(
            self, ["--storage-quota-bytes", str(1 << 30)], worker=False, n_gateways=1,
            durable=True)
        data = phantom_bytes(tmp, (8, 8, 8), seed=7)
        vid = upload(a, data)
        sha = hashlib.sha256(data).hexdigest()
        job = a.create_job({"volume": {"shape": [8, 8, 8]}}, engine="sim")
        port = redis.port
        redis.kill()
        poll(lambda: metric(a, "cryomamba_redis_connected") == 0, what="down seen")
        for length, s in ((len(data), sha), (10, None)):
            harness.assert_error(self, post(a, length, s), 503, "redis_unavailable",
                                 retryable=True)
        harness.assert_error(self, a.get("/v1/jobs/%s/preview" % job["job_id"]), 503,
                             "redis_unavailable", retryable=True)
        harness.assert_error(self, a.request("DELETE", "/v1/volumes/" + vid), 503,
                             "redis_unavailable")
        redis.start(port=port)
        wait_connected((a,), ())
        # The refused creations left no upload; the volume and its index
        # entry are whole; the counter did not move.
        self.assertEqual(a.get("/v1/volumes/" + vid).status, 200)
        self.assertEqual(redis.cli("GET", "cm:vol:sha256:" + sha), vid)
        self.assertEqual(used(redis), len(data))
        r = post(a, len(data), sha)
        self.assertEqual((r.status, r.header("CryoMamba-Volume-Id")), (201, vid), r)
        harness.assert_error(self, a.get("/v1/jobs/%s/preview" % job["job_id"]), 404,
                             "preview_not_ready", retryable=True)
        self.assertEqual(a.stop(), 0)


class SweepTest(unittest.TestCase):
    def plant(self, path):
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        return path

    def test_sweep_removes_planted_orphans_and_keeps_live_files(self):
        tmp = tempfile.mkdtemp(prefix="cryomamba-storage-")
        self.addCleanup(shutil.rmtree, tmp, True)
        shared = os.path.join(tmp, "shared")
        os.makedirs(shared)
        redis = Redis().start()
        self.addCleanup(redis.stop)
        args = ["--role", "gateway", "--redis", redis.url, "--shared-dir", shared,
                "--shared-sweep-interval-s", "1"]
        # A gateway with the default grace first, to make the directories,
        # a live volume and a queued job (no worker: it stays queued).
        g = harness.Server(args).start()
        self.addCleanup(g.cleanup)
        wait_connected((g,), ())
        vols, arts = os.path.join(shared, "volumes"), os.path.join(shared, "artifacts")
        live = upload(g, phantom_bytes(tmp, (8, 8, 8), seed=21))
        queued = g.create_job({"volume": {"shape": [8, 8, 8]}}, engine="sim")["job_id"]
        ended = harness.new_uuid()
        redis.cli("HSET", "cm:job:" + ended, "public",
                  json.dumps({"job_id": ended, "state": "failed"}))
        gone = harness.new_uuid()
        orphan_vol = self.plant(os.path.join(vols, harness.new_uuid() + ".mrc"))
        not_ours = self.plant(os.path.join(vols, "notes.txt"))
        kept = [os.path.join(vols, live + ".mrc"), not_ours,
                self.plant(os.path.join(arts, queued + "-mask.mrc.tmp")),
                self.plant(os.path.join(arts, ended + "-mask.mrc"))]
        removed = [self.plant(os.path.join(arts, ended + "-mask.mrc.tmp")),
                   self.plant(os.path.join(arts, gone + "-mask.mrc.tmp")),
                   self.plant(os.path.join(arts, gone + "-mask.mrc"))]
        poll(lambda: not any(os.path.exists(p) for p in removed), timeout=RUN_TIMEOUT,
             what="the orphaned artifacts removed")
        self.assertEqual(metric(g, "cryomamba_cluster_orphans_removed_total"), 3)
        # Younger than the grace (an hour): a volume file may be a link
        # whose record is on its way.
        self.assertTrue(os.path.exists(orphan_vol))
        self.assertEqual(g.stop(), 0)
        # With a grace of 1 s it goes; the live files stay.
        g2 = harness.Server(args + ["--shared-sweep-grace-s", "1"]).start()
        self.addCleanup(g2.cleanup)
        poll(lambda: not os.path.exists(orphan_vol), timeout=RUN_TIMEOUT,
             what="the orphaned volume removed")
        for p in kept:
            self.assertTrue(os.path.exists(p), p)
        self.assertEqual(g2.get("/v1/volumes/" + live).status, 200)
        self.assertEqual(g2.stop(), 0)


class BoundedSweepTest(unittest.TestCase):
    def test_each_sweep_examines_a_bounded_share_and_all_get_their_turn(self):
        tmp, shared, redis, (g,), _ = start_cluster(
            self, ["--shared-sweep-interval-s", "1", "--shared-sweep-max-files", "2"],
            worker=False, n_gateways=1)
        vols, arts = os.path.join(shared, "volumes"), os.path.join(shared, "artifacts")
        # More entries of volumes/ than one sweep examines, none an orphan:
        # the temporaries of gone jobs in artifacts/ are reached only
        # because each sweep goes on where the previous one stopped.
        kept = []
        for i in range(3):
            kept.append(os.path.join(vols, "notes-%d.txt" % i))
            with open(kept[-1], "wb") as f:
                f.write(b"keep")
        removed = []
        for _ in range(3):
            removed.append(os.path.join(arts, harness.new_uuid() + "-mask.mrc.tmp"))
            with open(removed[-1], "wb") as f:
                f.write(b"x")
        poll(lambda: not any(os.path.exists(p) for p in removed), timeout=RUN_TIMEOUT,
             what="every orphan reached")
        self.assertTrue(all(os.path.exists(p) for p in kept))
        self.assertEqual(metric(g, "cryomamba_cluster_orphans_removed_total"), 3)
        self.assertEqual(g.stop(), 0)


class FailedCompletionSweepTest(unittest.TestCase):
    def test_link_whose_record_failed_is_swept_and_the_upload_completes_later(self):
        tmp, shared, redis, (g,), _ = start_cluster(
            self, ["--shared-sweep-grace-s", "1", "--shared-sweep-interval-s", "1"],
            worker=False, n_gateways=1, durable=True)
        vols = os.path.join(shared, "volumes")
        data = phantom_bytes(tmp, (8, 8, 8), seed=31)
        r = post(g, len(data))
        url = r.header("Location")
        port = redis.port
        redis.kill()
        poll(lambda: metric(g, "cryomamba_redis_connected") == 0, what="down seen")
        # All bytes in: the volume's file is linked, its record cannot be
        # stored, so no volume id is acknowledged and the link is an orphan.
        r = patch_all(g, url, data)
        self.assertGreaterEqual(r.status, 500, r)
        self.assertIsNone(r.header("CryoMamba-Volume-Id"))
        orphans = os.listdir(vols)
        self.assertEqual(len(orphans), 1, orphans)
        redis.start(port=port)
        wait_connected((g,), ())
        poll(lambda: not os.path.exists(os.path.join(vols, orphans[0])), timeout=RUN_TIMEOUT,
             what="the orphaned link swept")
        self.assertGreaterEqual(metric(g, "cryomamba_cluster_orphans_removed_total"), 1)
        # The upload was never acknowledged: an empty PATCH completes it now.
        r = g.request("PATCH", url, raw=b"",
                      headers=dict(PATCH, **{"Upload-Offset": str(len(data))}))
        self.assertEqual(r.status, 204, r)
        vid = r.header("CryoMamba-Volume-Id")
        self.assertEqual(os.listdir(vols), [vid + ".mrc"])
        self.assertEqual(g.get("/v1/volumes/" + vid).json["size_bytes"], len(data))
        self.assertEqual(used(redis), len(data))
        self.assertEqual(g.stop(), 0)


if __name__ == "__main__":
    unittest.main()
