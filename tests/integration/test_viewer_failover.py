#!/usr/bin/python3
"""cryomamba-viewer with a list of servers (libcryomamba's failover,
docs/protocol.md 5.8) against a cluster: redis + gateways A and B + one
worker (test_cluster_failover.py's setup), under test_viewer.py's private
Xvfb. `--server A,B --submit` (shape only: gateways take no uploads yet):
gateway A killed with SIGKILL once a preview is shown, the viewer
reconnects to B, sees the job completed and exits 0; with A dead from the
start, the server check, the submit and the live view all go to B. The
final mask's download (a GET, failed over to B too) comes from B, which
serves the worker's artifact from the shared directory: the screenshot
shows the final mask. Skips like test_viewer.py (no viewer, no Xvfb, no
PIL)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from redis_util import Redis  # noqa: E402
from test_cluster import metric, poll  # noqa: E402
from test_viewer import SHOT_RE, ViewerCase, make_phantom, skip_reason  # noqa: E402


class ViewerFailoverTest(ViewerCase):
    @classmethod
    def setUpClass(cls):
        cls.procs = []
        if skip_reason():
            cls.redis = None
            return
        cls.redis = Redis().start()
        cls.shared = harness.tempfile.mkdtemp(prefix="cryomamba-shared-")
        args = ["--redis", cls.redis.url, "--shared-dir", cls.shared]
        cls.w = harness.Server(["--role", "worker"] + args).start()
        cls.procs.append(cls.w)
        cls.args = args

    @classmethod
    def tearDownClass(cls):
        try:
            for s in cls.procs:
                s.cleanup()
        finally:
            if cls.redis is not None:
                cls.redis.stop()
                harness.shutil.rmtree(cls.shared, ignore_errors=True)

    def gateways(self):
        a = harness.Server(["--role", "gateway"] + self.args).start()
        b = harness.Server(["--role", "gateway"] + self.args).start()
        self.procs.extend([a, b])
        for s in (a, b):
            poll(lambda: metric(s, "cryomamba_redis_connected") == 1, what="redis on gateway")
            poll(lambda: metric(s, "cryomamba_redis_sub_connected") == 1, what="sub on gateway")
        poll(lambda: metric(self.w, "cryomamba_redis_stream_connected") == 1,
             what="worker stream connected")
        return a, b

    def run_viewer(self, servers, duration):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (16, 32, 32))
        return self.viewer("--server", servers, "--open", ph, "--submit", "--no-upload",
                           "--engine", "sim", "--encoding", "base64", "--hz", "10",
                           "--duration", str(duration), "--max-retries", "5",
                           "--screenshot", self.path("shot.png"))

    def check_end(self, v, b, job_id):
        v.wait_line(r"^viewer: job %s completed$" % job_id)
        # downloaded from B (A is dead), off the shared directory
        v.wait_line(r"^viewer: final mask shown")
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(6), "final", m.group(0))
        self.assertEqual(b.job(job_id)["state"], "completed")

    def test_gateway_killed_while_the_viewer_watches(self):
        a, b = self.gateways()
        v = self.run_viewer("%s,%s" % (a.base, b.base), 5)
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(r"^viewer: preview \d+ shown")
        a.kill()
        v.wait_line(r"^viewer: connection lost \(.*\), reconnecting in [0-9.]+ s "
                    r"\(attempt \d+\)$")
        v.wait_line(r"^viewer: reconnected to job %s \(state running" % job_id)
        self.check_end(v, b, job_id)

    def test_first_server_dead_from_the_start(self):
        a, b = self.gateways()
        a.kill()
        v = self.run_viewer("%s,%s" % (a.base, b.base), 0.5)
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        self.check_end(v, b, job_id)


if __name__ == "__main__":
    unittest.main()
