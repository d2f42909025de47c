"""test_cluster_retention.py: --retention-max-jobs and --retention-max-age
on cluster gateways (docs/operations.md "Cluster"), as on --role all: the
oldest finished jobs past the count and those finished longer ago than the
age are deleted for every gateway, with what a purge deletes (the record,
the stored frames, the chunk table, the index entries, the artifact and
its bytes in cm:storage:used); a running job is never retired, however
old. A private redis-server, two gateways and one worker on loopback
sharing a temporary directory."""

import datetime
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import metric, poll  # noqa: E402
from test_cluster_volumes import QUICK, wait_connected  # noqa: E402

LONG = {"volume": {"shape": [8, 8, 8]},
        "params": {"engine": "sim", "duration_s": 120, "preview_hz": 2}}
WAIT = 60 * harness.SPEED_SCALE


class Cluster:
    def __init__(self, retention):
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-retain-")
        self.shared = os.path.join(self.tmp, "shared")
        os.makedirs(self.shared)
        self.redis = Redis().start()
        args = ["--redis", self.redis.url, "--shared-dir", self.shared]
        self.a = harness.Server(["--role", "gateway"] + args + retention).start()
        self.b = harness.Server(["--role", "gateway"] + args + retention).start()
        self.w = harness.Server(["--role", "worker", "--max-running", "2"] + args).start()
        wait_connected((self.a, self.b), (self.w,))

    def stop(self):
        try:
            for s in (self.a, self.b, self.w):
                rc = s.stop()
                if rc != 0:
                    raise AssertionError("exit status %r: %s" % (rc, s.stderr_tail(2000)))
        finally:
            for s in (self.a, self.b, self.w):
                s.cleanup()
            self.redis.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def artifact(self, jid):
        return os.path.join(self.shared, "artifacts", jid + "-mask.mrc")

    def keys_of(self, jid):
        return [k % jid for k in ("cm:job:%s", "cm:term:%s", "cm:prev:%s", "cm:chunkmeta:%s")]

    def retired(self):
        return sum(metric(s, "cryomamba_jobs_retired_total") or 0 for s in (self.a, self.b))


class RetentionByCountTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(["--retention-max-jobs", "2"])

    def tearDown(self):
        self.c.stop()

    def test_the_oldest_finished_jobs_past_the_count_go_everywhere(self):
        c = self.c
        running = c.a.create_job(LONG)["job_id"]  # the oldest of all, never retired
        c.b.wait_state(running, "running", timeout=WAIT)
        done = []
        for i in range(4):
            jid = (c.a if i % 2 else c.b).create_job(QUICK)["job_id"]
            c.a.wait_state(jid, "completed", timeout=WAIT)
            done.append(jid)
        old, kept = done[:2], done[2:]
        poll(lambda: all(s.get("/v1/jobs/" + j).status == 404 for j in old
                         for s in (c.a, c.b)), timeout=WAIT, what="the two oldest retired")
        for jid in old:
            for k in c.keys_of(jid):
                self.assertEqual(c.redis.cli("EXISTS", k), "0", k)
            self.assertEqual(c.redis.cli("ZSCORE", "cm:jobs:index", jid), "")
            poll(lambda: not os.path.exists(c.artifact(jid)), what="artifact unlinked")
        for jid in kept:
            self.assertEqual(c.b.job(jid)["state"], "completed")
            self.assertTrue(os.path.exists(c.artifact(jid)))
            self.assertEqual(c.redis.cli("EXISTS", "cm:chunkmeta:" + jid), "1")
        self.assertEqual(c.a.job(running)["state"], "running")
        self.assertEqual(int(c.redis.cli("ZCARD", "cm:jobs:finished")), 2)
        listed = c.b.get("/v1/jobs?limit=10").json
        self.assertEqual(sorted(j["job_id"] for j in listed["jobs"]), sorted(kept + [running]))
        self.assertEqual(listed["total"], 3)
        # the quota's counter lost the retired artifacts' bytes, no more
        used = int(c.redis.cli("GET", "cm:storage:used") or 0)
        self.assertEqual(used, sum(int(c.redis.cli("HGET", "cm:job:" + j, "storage_bytes"))
                                   for j in kept))
        self.assertEqual(c.retired(), 2)
        # a purge of a kept job takes its chunk table and finished entry too
        r = c.a.request("DELETE", "/v1/jobs/%s?purge=1" % kept[0])
        self.assertEqual(r.status, 200, r.body)
        for k in c.keys_of(kept[0]):
            self.assertEqual(c.redis.cli("EXISTS", k), "0", k)
        self.assertEqual(c.redis.cli("ZSCORE", "cm:jobs:finished", kept[0]), "")
        r = c.b.request("DELETE", "/v1/jobs/" + running)
        self.assertEqual(r.status, 202, r.body)
        c.a.wait_state(running, "cancelled", timeout=WAIT)


class RetentionByAgeTest(unittest.TestCase):
    AGE_S = 2.0

    def setUp(self):
        self.c = Cluster(["--retention-max-jobs", "0", "--retention-max-age", str(self.AGE_S)])

    def tearDown(self):
        self.c.stop()

    def test_a_finished_job_goes_once_older_than_the_age_not_before(self):
        c = self.c
        jid = c.a.create_job(QUICK)["job_id"]
        rec = c.b.wait_state(jid, "completed", timeout=WAIT)
        finished = datetime.datetime.fromisoformat(
            rec["finished_at"].replace("Z", "+00:00")).timestamp()
        gone_at = poll(lambda: c.a.get("/v1/jobs/" + jid).status == 404 and time.time(),
                       timeout=WAIT, what="retired by age")
        # never before the age (the gateway's clock is this machine's)
        self.assertGreaterEqual(gone_at - finished, self.AGE_S - 0.05)
        self.assertEqual(c.b.get("/v1/jobs/" + jid).status, 404)
        poll(lambda: not os.path.exists(c.artifact(jid)), what="artifact unlinked")
        self.assertEqual(c.retired(), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
