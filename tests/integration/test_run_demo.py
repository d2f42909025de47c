"""test_run_demo.py: `make run`'s script (scripts/run-demo) writes a
phantom, uploads it, segments it with the classic engine while the
previews stream in a terminal, and stops its server when that terminal
closes. Closing a terminal hangs up only the session leader (make, which
then waits for its children), so before the fix the server stayed on its
port."""

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


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RunDemo(unittest.TestCase):
    def test_closing_the_terminal_stops_the_server(self):
        port = free_port()
        state = os.path.join(BUILD, "run-demo-test-state-%d" % port)
        self.addCleanup(shutil.rmtree, state, True)
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(ROOT)
            os.environ["CRYOMAMBA_STATE_DIR"] = state
            # Like make: the session leader catches the hang-up and waits for
            # its child (a handler, not SIG_IGN, so the child keeps the default).
            os.execvp("sh", ["sh", "-c", "trap 'echo hangup' HUP; bash scripts/run-demo '%s' %d"
                             % (BUILD, port)])
        out = b""
        deadline = time.monotonic() + 90
        while b"Press Ctrl-C" not in out:
            self.assertLess(time.monotonic(), deadline, "the demo never finished: %r" % out[-500:])
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
        self.assertIn(b"completed", out)
        # The mask streamed as chunked deltas, drawn as a slice on the tty.
        self.assertIn(b"--encoding chunks", out)
        self.assertIn(b"XY slice z=", out)
        # The server is still up, as promised: the job it ran was classic on
        # the uploaded phantom, and it found membranes and particles.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/jobs?limit=10")
        jobs = json.loads(conn.getresponse().read())["jobs"]
        conn.close()
        self.assertEqual(len(jobs), 1, jobs)
        job = jobs[0]
        self.assertEqual(job["state"], "completed", job)
        self.assertEqual(job["params"]["engine"], "classic")
        self.assertIsNotNone(job["volume"]["volume_id"])
        self.assertEqual(job["volume"]["shape"], [128, 256, 256])
        self.assertGreater(job["previews_sent"], 1)
        counts = job["stats"]["label_counts"]
        voxels = 128 * 256 * 256
        for label in ("1", "2"):  # a few % each, as in the phantom
            self.assertGreater(counts.get(label, 0), voxels // 200, counts)
            self.assertLess(counts.get(label, 0), voxels // 5, counts)
        os.close(fd)  # the terminal closes
        deadline = time.monotonic() + 15
        while True:
            s = socket.socket()
            up = s.connect_ex(("127.0.0.1", port)) == 0
            s.close()
            if not up:
                break
            self.assertLess(time.monotonic(), deadline, "the server outlived its terminal")
            time.sleep(0.1)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
