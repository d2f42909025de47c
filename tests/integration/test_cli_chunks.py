"""`cryomamba watch --encoding chunks` (src/client/sub_chunks.c) against the
real server (docs/protocol.md 11): the mask the CLI rebuilds from a keyframe
and deltas, saved after each complete delta, equals the job's artifact (max
downsampled at --scale 2); the `end` event's bytes_received counts the bytes
on the wire for every encoding, and chunks need far fewer than zstd; a
connection cut mid-stream resumes with since/epoch and keeps the mask."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from harness import Server, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_BIN = os.path.abspath(os.environ.get(
    "CRYOMAMBA_CLI_BIN", os.path.join(HERE, "..", "..", "build", "src", "cli", "cryomamba")))
RUN_TIMEOUT = 120


def read_mrc(path):
    with mrcfile.open(path) as m:
        return np.array(m.data).astype(np.uint8)


def max_downsample(mask, s):
    """Level voxel = the largest label of its s^3 block, clipped (labels >= 0,
    so padding with 0 changes nothing)."""
    pad = [(0, (-n) % s) for n in mask.shape]
    m = np.pad(mask, pad)
    z, y, x = (n // s for n in m.shape)
    return m.reshape(z, s, y, s, x, s).max(axis=(1, 3, 5))


class CuttingProxy:
    """A TCP proxy to 127.0.0.1:upstream that keeps each connection's request
    line and cuts the first connection once the server has sent it `cut`
    bytes (mid-stream: a dropped connection, no close frame)."""

    def __init__(self, upstream, cut):
        self.upstream = upstream
        self.cut = cut
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            index = len(self.requests)
            self.requests.append(None)
            u = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._up, args=(c, u, index), daemon=True).start()
            threading.Thread(target=self._down, args=(c, u, index), daemon=True).start()

    def _up(self, c, u, index):
        head = b""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                if self.requests[index] is None:
                    head += b
                    if b"\r\n" in head:
                        self.requests[index] = head.split(b"\r\n")[0].decode()
                u.sendall(b)
        except OSError:
            pass
        for s in (u, c):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _down(self, c, u, index):
        sent = 0
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                if index == 0 and sent + len(b) >= self.cut:
                    c.sendall(b[:self.cut - sent])
                    break
                c.sendall(b)
                sent += len(b)
        except OSError:
            pass
        for s in (u, c):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class ChunksCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(CLI_BIN):
            raise RuntimeError("cli binary not found: %s (set CRYOMAMBA_CLI_BIN)" % CLI_BIN)
        cls.server = Server(("--max-running", "4")).start()
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-chunks-")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, *args):
        e = dict(os.environ)
        e.pop("CRYOMAMBA_TOKEN", None)
        e["CRYOMAMBA_SERVER"] = self.server.base
        return subprocess.run([CLI_BIN] + list(args), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, env=e, stdin=subprocess.DEVNULL)

    def submit(self, *args):
        r = self.cli("--json", "submit", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["job_id"]

    def watch(self, job_id, *extra):
        r = self.cli("--json", "watch", job_id, *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(events[-1]["event"], "end")
        self.assertEqual(events[-1]["exit_code"], 0)
        return events

    def artifact(self, job_id):
        path = os.path.join(self.tmp, "art-%s.mrc" % job_id)
        with open(path, "wb") as f:
            f.write(self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id).body)
        return read_mrc(path)

    def check_chunks_watch(self, job_id, scale, vol_shape):
        pdir = os.path.join(self.tmp, "chunks-%d-%s" % (scale, job_id))
        events = self.watch(job_id, "--encoding", "chunks", "--scale", str(scale),
                            "--save-previews", pdir)
        previews = [e for e in events if e["event"] == "preview"]
        self.assertTrue(previews, "complete deltas are previews")
        want = tuple(-(-n // scale) for n in vol_shape)
        for p in previews:
            self.assertEqual(tuple(p["shape"]), want)
            self.assertEqual(p["scale"], scale)
            self.assertIn("chunks", p)
        self.assertGreater(sum(p["chunks"] for p in previews), 0)
        self.assertIn("completed", [e["event"] for e in events])
        with mrcfile.open(previews[-1]["saved"]) as m:
            self.assertAlmostEqual(float(m.voxel_size.x), 1.0 * scale, places=3)
        last = read_mrc(previews[-1]["saved"])
        mask = self.artifact(job_id)
        self.assertEqual(mask.shape, tuple(vol_shape))
        self.assertTrue((mask > 0).any(), "the blobs job found something")
        expect = max_downsample(mask, scale) if scale > 1 else mask
        self.assertEqual(last.shape, expect.shape)
        self.assertTrue(np.array_equal(last, expect),
                        "%d voxels differ" % int((last != expect).sum()))
        return events[-1]

    def test_chunks_rebuild_the_artifact_at_scale_1(self):
        shape = (40, 70, 66)  # edge chunks are partial on every axis
        job_id = self.submit("--shape", ",".join(map(str, shape)), "--hz", "8",
                             "--duration", "1.5", "--pattern", "blobs", "--seed", "4")
        end = self.check_chunks_watch(job_id, 1, shape)
        self.assertGreater(end["bytes_received"], 0)

    def test_chunks_rebuild_the_artifact_max_downsampled_at_scale_2(self):
        shape = (37, 50, 45)
        job_id = self.submit("--shape", ",".join(map(str, shape)), "--hz", "8",
                             "--duration", "1", "--pattern", "blobs", "--seed", "11")
        self.check_chunks_watch(job_id, 2, shape)
        # a late joiner of the completed job: connected, keyframe, completed
        self.check_chunks_watch(job_id, 4, shape)

    def test_bytes_received_for_every_encoding_and_chunks_are_smaller(self):
        """Two watchers of one running job, zstd and chunks at the same level
        (scale 1): both report the bytes on the wire (more than the
        messages); chunks send each preview's changed 32^3 chunks only, zstd
        the whole mask every time."""
        shape = (64, 96, 96)
        job_id = self.submit("--shape", ",".join(map(str, shape)), "--hz", "10",
                             "--duration", "2", "--pattern", "blobs", "--seed", "2")
        procs = {}
        for enc in ("zstd", "chunks"):
            procs[enc] = subprocess.Popen(
                [CLI_BIN, "--server", self.server.base, "--json", "watch", job_id,
                 "--encoding", enc], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
        ends = {}
        for enc, p in procs.items():
            out, err = p.communicate(timeout=RUN_TIMEOUT)
            self.assertEqual(p.returncode, 0, "%s: %s" % (enc, err))
            ends[enc] = json.loads(out.splitlines()[-1])
        for enc, end in ends.items():
            self.assertGreater(end["bytes_received"], end["message_bytes"], enc)
            self.assertGreater(end["previews"], 0, enc)
        self.assertLess(ends["chunks"]["bytes_received"] * 2, ends["zstd"]["bytes_received"],
                        "chunks %d vs zstd %d bytes" % (ends["chunks"]["bytes_received"],
                                                        ends["zstd"]["bytes_received"]))
        # the other encodings report it too
        for enc in ("base64", "raw"):
            end = self.watch(job_id, "--encoding", enc)[-1]
            self.assertGreater(end["bytes_received"], end["message_bytes"], enc)

    def test_reconnect_asks_since_and_keeps_the_mask(self):
        """The first connection is cut mid-stream after the keyframe; the
        watch reconnects with since=<last complete seq>&epoch=<epoch>, gets
        only what changed since, and its last saved mask is still exactly
        the artifact."""
        shape = (48, 80, 80)
        job_id = self.submit("--shape", ",".join(map(str, shape)), "--hz", "10",
                             "--duration", "2.5", "--pattern", "blobs", "--seed", "6")
        proxy = CuttingProxy(self.server.port, cut=6000)
        self.addCleanup(proxy.close)
        pdir = os.path.join(self.tmp, "cut-%s" % job_id)
        e = dict(os.environ)
        e.pop("CRYOMAMBA_TOKEN", None)
        r = subprocess.run([CLI_BIN, "--server", "http://127.0.0.1:%d" % proxy.port, "--json",
                            "watch", job_id, "--encoding", "chunks", "--scale", "1",
                            "--save-previews", pdir], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, env=e, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertGreaterEqual(events[-1]["reconnects"], 1, r.stdout[-2000:])
        self.assertGreaterEqual(len(proxy.requests), 2)
        self.assertNotIn("since=", proxy.requests[0])
        self.assertRegex(proxy.requests[1], r"since=\d+&epoch=[^ &]+ HTTP/1.1$")
        previews = [p for p in events if p["event"] == "preview"]
        self.assertFalse([x for x in events if x["event"] == "error"], "no error")
        last = read_mrc(previews[-1]["saved"])
        mask = self.artifact(job_id)
        self.assertTrue(np.array_equal(last, mask),
                        "%d voxels differ" % int((last != mask).sum()))

    def test_scale_is_checked(self):
        job_id = self.submit("--shape", "8,8,8", "--duration", "0.1")
        r = self.cli("watch", job_id, "--encoding", "chunks", "--scale", "3")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--scale", r.stderr)
        r = self.cli("watch", job_id, "--scale", "2")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--encoding chunks", r.stderr)


if __name__ == "__main__":
    main()
