"""test_run_cluster.py: `make run-cluster`'s script (scripts/run-cluster)
starts redis-server, three gateways and two workers on loopback sharing a
directory, uploads a phantom through the first gateway, has a worker segment
it (classic), watches it stream to completion through the third gateway, and
stops every process when its terminal closes."""

import http.client
import json
import os
import pty
import shutil
import socket
import time
import unittest

from harness import SERVER_BIN, main

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BUILD = os.path.dirname(os.path.dirname(os.path.dirname(SERVER_BIN)))


def is_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n):
    """A port P with P..P+n-1 free (and P+379 for Redis)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p + n + 379 < 65535 and all(is_free(p + i) for i in range(n)) and is_free(p + 379):
            return p
    raise AssertionError("no run of free ports")


def is_up(port):
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


class RunCluster(unittest.TestCase):
    def test_cluster_streams_a_job_and_stops_with_its_terminal(self):
        port = free_ports(3)
        state = os.path.join(BUILD, "run-cluster-test-state-%d" % port)
        self.addCleanup(shutil.rmtree, state, True)
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(ROOT)
            os.environ["CRYOMAMBA_CLUSTER_DIR"] = state
            os.execvp("sh", ["sh", "-c", "trap 'echo hangup' HUP; bash scripts/run-cluster '%s' %d"
                             % (BUILD, port)])
        out = b""
        deadline = time.monotonic() + 90
        while b"Press Ctrl-C" not in out:
            self.assertLess(time.monotonic(), deadline, "run-cluster never finished: %r" % out[-800:])
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
        text = out.decode("utf-8", "replace")
        self.assertIn("completed", text)
        self.assertEqual(text.count("is http://127.0.0.1:"), 5, text[-2000:])  # 3 gateways, 2 workers
        job_id = text.split("\njob ", 1)[1].split()[0]
        # every gateway sees the job, completed: classic on the phantom
        # uploaded through the first one, membranes and particles found
        for i in range(3):
            status, job = get(port + i, "/v1/jobs/" + job_id)
            self.assertEqual(status, 200, job)
            self.assertEqual(job["state"], "completed", job)
            self.assertGreater(job["previews_sent"], 1, job)
            self.assertEqual(job["params"]["engine"], "classic")
            self.assertIsNotNone(job["volume"]["volume_id"])
            self.assertEqual(job["volume"]["shape"], [128, 256, 256])
            counts = job["stats"]["label_counts"]
            for label in ("1", "2"):
                self.assertGreater(counts.get(label, 0), 128 * 256 * 256 // 200, counts)
        # the worker's artifact, on the shared directory, from another gateway
        conn = http.client.HTTPConnection("127.0.0.1", port + 1, timeout=30)
        conn.request("GET", "/v1/jobs/%s/artifacts/mask.mrc" % job_id)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 200, body[:200])
        self.assertEqual(len(body), 1024 + 128 * 256 * 256)
        self.assertIn("XY slice z=", text)
        os.close(fd)  # the terminal closes: everything stops
        deadline = time.monotonic() + 20
        while any(is_up(p) for p in (port, port + 1, port + 2, port + 379)):
            self.assertLess(time.monotonic(), deadline, "a process outlived its terminal")
            time.sleep(0.1)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
