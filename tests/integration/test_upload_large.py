#!/usr/bin/python3
"""A large upload (docs/protocol.md, "Uploads"): a 2 GiB MRC streamed in
64 MiB PATCHes, with the server's memory flat in the file's size. The
source is sparse (a 1024-byte header, then ftruncate: zeros), so the test
needs no 2 GiB of random data and holds none of it in memory: bodies go
out with sendfile(2) and the expected sha256 is computed over 8 MiB reads.
The server writes real blocks, so its state dir needs the file's size
twice over (the upload's file becomes the volume's) plus margin.

CRYOMAMBA_TEST_LARGE_UPLOAD_MIB sets the data size (default 2048; a
multiple of 1 MiB, at most 4096) for slow builds; below 4x the RSS bound the
test skips, since buffering the file could then pass unnoticed."""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EV, RSS_SCALE, Server, main  # noqa: E402

MIB = 1 << 20
DATA_MIB = int(os.environ.get("CRYOMAMBA_TEST_LARGE_UPLOAD_MIB", "2048"))
CHUNK = 64 * MIB
# What the server may grow by during the upload, whatever the file's size:
# measured +2.3 MiB for 2 GiB (a 1 MiB write buffer, a 1 MiB read buffer for
# the completion's hash, pool threads), +31.5 MiB under ASan (its 16 MiB
# quarantine keeps freed PATCH buffers). Buffering the file would grow it by
# the file's size (one built to hold whole 64 MiB PATCHes grew by 64.1 MiB).
RSS_BOUND_MIB = 64 * RSS_SCALE
SAMPLE_S = 0.005


def mrc_header(nx, ny, nz):
    """A little-endian MRC2014 header, mode 2 (float32), 1 A voxels."""
    h = bytearray(1024)
    struct.pack_into("<4i", h, 0, nx, ny, nz, 2)
    struct.pack_into("<3i", h, 28, nx, ny, nz)
    struct.pack_into("<6f", h, 40, nx, ny, nz, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    struct.pack_into("<i", h, 88, 1)
    struct.pack_into("<i", h, 108, 20140)
    h[208:214] = b"MAP \x44\x44"
    return bytes(h)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class Conn:
    """One keep-alive connection; PATCH bodies go out with sendfile."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.rfile = self.sock.makefile("rb")

    def request(self, method, path, headers=(), file=None, offset=0, count=0):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: t", "Tus-Resumable: 1.0.0"]
        if method in ("POST", "PATCH"):
            lines.append("Content-Length: %d" % count)
        lines += ["%s: %s" % kv for kv in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if count:
            self.sock.sendfile(file, offset, count)
        status = int(self.rfile.readline().split()[1])
        hdrs = {}
        for line in iter(self.rfile.readline, b"\r\n"):
            k, _, v = line.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = 0 if method == "HEAD" else int(hdrs.get("content-length", "0"))
        return status, hdrs, self.rfile.read(n)

    def close(self):
        self.rfile.close()
        self.sock.close()


class Watcher(threading.Thread):
    """Until stopped: the server's RSS and, on its own connection, HEAD's
    Upload-Offset, one sample every SAMPLE_S."""

    def __init__(self, srv, url):
        super().__init__(daemon=True)
        self.srv, self.url = srv, url
        self.rss, self.offsets, self.error = [], [], None
        self.stop_ev = threading.Event()

    def run(self):
        conn = Conn(self.srv.port)
        try:
            while not self.stop_ev.is_set():
                self.rss.append(rss_kib(self.srv.proc.pid))
                status, h, _ = conn.request("HEAD", self.url)
                if status != 200:
                    raise AssertionError("HEAD during the upload: %d %r" % (status, h))
                self.offsets.append(int(h["upload-offset"]))
                self.stop_ev.wait(SAMPLE_S)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        self.join(EV)


class LargeUploadTest(unittest.TestCase):
    def setUp(self):
        if DATA_MIB * MIB < 4 * RSS_BOUND_MIB * MIB:
            self.skipTest("%d MiB is too small to tell a buffered file from an RSS bound of "
                          "%d MiB" % (DATA_MIB, RSS_BOUND_MIB))
        self.size = 1024 + DATA_MIB * MIB
        tmp = tempfile.gettempdir()
        free = shutil.disk_usage(tmp).free
        if free < 3 * self.size:
            self.skipTest("%s has %.1f GiB free; a %.1f GiB upload needs %.1f GiB (the upload "
                          "and the volume, plus margin)"
                          % (tmp, free / 2**30, self.size / 2**30, 3 * self.size / 2**30))
        self.src_dir = tempfile.mkdtemp(prefix="cryomamba-large-")
        self.addCleanup(shutil.rmtree, self.src_dir, True)
        self.src = os.path.join(self.src_dir, "large.mrc")
        with open(self.src, "wb") as f:
            f.write(mrc_header(1024, 256, DATA_MIB))
            f.truncate(self.size)
        self.srv = Server().start()
        self.addCleanup(self.srv.cleanup)

    def sha256_of_file(self):
        md = hashlib.sha256()
        with open(self.src, "rb") as f:
            for block in iter(lambda: f.read(8 * MIB), b""):
                md.update(block)
        return md.hexdigest()

    def test_large_upload_keeps_rss_flat(self):
        want_sha = self.sha256_of_file()
        conn = Conn(self.srv.port)
        self.addCleanup(conn.close)
        name = base64.b64encode(b"large.mrc").decode()
        status, h, body = conn.request("POST", "/v1/uploads", [
            ("Upload-Length", str(self.size)), ("Upload-Metadata", "filename " + name)])
        self.assertEqual(status, 201, body)
        url = h["location"]
        rss_before = rss_kib(self.srv.proc.pid)
        watcher = Watcher(self.srv, url)
        watcher.start()
        t0 = time.monotonic()
        off, answers = 0, []
        try:
            with open(self.src, "rb") as f:
                while off < self.size:
                    n = min(CHUNK, self.size - off)
                    status, h, body = conn.request(
                        "PATCH", url, [("Content-Type", "application/offset+octet-stream"),
                                       ("Upload-Offset", str(off))], f, off, n)
                    self.assertEqual(status, 204, body)
                    self.assertEqual(int(h["upload-offset"]), off + n)
                    off += n
                    answers.append(off)
        finally:
            watcher.stop()
        took = time.monotonic() - t0
        self.assertIsNone(watcher.error)
        vid = h.get("cryomamba-volume-id")
        self.assertTrue(vid, h)

        grown_mib = (max(watcher.rss) - rss_before) / 1024
        print("\n%.1f GiB in %.1f s (%.0f MB/s to the volume); server RSS %.1f MiB before, "
              "max %.1f MiB during (+%.1f MiB) over %d samples"
              % (self.size / 2**30, took, self.size / took / 1e6, rss_before / 1024,
                 max(watcher.rss) / 1024, grown_mib, len(watcher.rss)), file=sys.stderr)
        self.assertGreater(len(watcher.rss), 10, "too few RSS samples to say anything")
        self.assertLess(grown_mib, RSS_BOUND_MIB,
                        "the server grew by %.1f MiB during a %.1f GiB upload"
                        % (grown_mib, self.size / 2**30))

        # HEAD never went back, and never named an offset no PATCH had
        # reached (only durable offsets: each PATCH's end).
        offs = watcher.offsets
        self.assertEqual(offs, sorted(offs), "HEAD's Upload-Offset went back")
        self.assertLessEqual(set(offs), set([0] + answers), "HEAD named a non-durable offset")
        self.assertGreater(len(set(offs)), 1, "HEAD never saw the offset move")
        status, h, _ = conn.request("HEAD", url)
        self.assertEqual((status, int(h["upload-offset"]), h.get("cryomamba-volume-id")),
                         (200, self.size, vid))

        status, _, body = conn.request("GET", "/v1/volumes/%s" % vid)
        self.assertEqual(status, 200, body)
        v = json.loads(body)
        self.assertEqual(v["size_bytes"], self.size)
        self.assertEqual(v["shape"], [DATA_MIB, 256, 1024])
        self.assertEqual(v["mode"], 2)
        self.assertEqual(v["sha256"], want_sha)
        vol_file = os.path.join(self.srv.state_dir, "volumes", vid + ".mrc")
        self.assertEqual(os.path.getsize(vol_file), self.size)
        self.srv.assert_healthy()


if __name__ == "__main__":
    main()
