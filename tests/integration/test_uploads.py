#!/usr/bin/python3
"""Uploads (docs/protocol.md, "Uploads" and "Volumes"): tus 1.0.0 under
/v1/uploads against the real server, with http.client and raw sockets.
MRC files are written with mrcfile (Debian python3-mrcfile)."""

import base64
import hashlib
import http.client
import io
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from harness import Server, assert_error, main  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}


def make_mrc(shape=(8, 16, 24), seed=0, voxel=2.5):
    """An MRC2014 file's bytes: float32 noise of `shape` (z, y, x)."""
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    buf = io.BytesIO()
    path = "/tmp/cryomamba-upl-%d-%d.mrc" % (os.getpid(), seed)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = voxel
        m.header.origin = (1.0, 2.0, 3.0)
    with open(path, "rb") as f:
        buf.write(f.read())
    os.unlink(path)
    return buf.getvalue()


def meta(**kv):
    return ",".join("%s %s" % (k, base64.b64encode(v.encode()).decode())
                    for k, v in kv.items())


class TusCase(unittest.TestCase):
    """A server per test and the tus requests the tests send."""
    args = ()

    def setUp(self):
        self.srv = Server(self.args).start()

    def tearDown(self):
        self.srv.cleanup()

    # -- helpers --------------------------------------------------------
    def req(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        h = dict(TUS)
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            payload = r.read()
            from harness import Resp
            return Resp(r.status, r.getheaders(), payload)
        finally:
            conn.close()

    def create(self, length, metadata=None, extra=None, expect=201):
        h = {"Upload-Length": str(length)}
        if metadata is not None:
            h["Upload-Metadata"] = metadata
        h.update(extra or {})
        r = self.req("POST", "/v1/uploads", headers=h)
        self.assertEqual(r.status, expect, r)
        self.assertEqual(r.header("Tus-Resumable"), "1.0.0")
        return r

    def patch(self, url, offset, data, extra=None):
        h = {"Content-Type": "application/offset+octet-stream",
             "Upload-Offset": str(offset)}
        h.update(extra or {})
        return self.req("PATCH", url, body=data, headers=h)

    def head(self, url):
        return self.req("HEAD", url)

    def upload(self, data, chunk=None, filename="t.mrc"):
        url = self.create(len(data), meta(filename=filename)).header("Location")
        chunk = chunk or len(data)
        off = 0
        r = None
        while off < len(data):
            r = self.patch(url, off, data[off:off + chunk])
            self.assertEqual(r.status, 204, r)
            off = int(r.header("Upload-Offset"))
        return url, r

    def restart(self, sig=signal.SIGKILL):
        """Stops the server (kill -9 by default) and starts another on the
        same state directory."""
        if sig == signal.SIGKILL:
            self.srv.proc.send_signal(sig)
            self.srv.proc.wait(10)
        else:
            self.assertEqual(self.srv.stop(sig), 0)
        old = self.srv
        self.addCleanup(old.cleanup)
        self.srv = Server(self.args, state_dir=old.state_dir).start()

    def edit_record(self, upload_id, **fields):
        """Changes fields of a stopped server's upload record."""
        import json
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"))
        with db:
            (text,) = db.execute("SELECT record FROM uploads WHERE id = ?",
                                 (upload_id,)).fetchone()
            rec = json.loads(text)
            rec.update(fields)
            db.execute("UPDATE uploads SET record = ? WHERE id = ?",
                       (json.dumps(rec), upload_id))
        db.close()

    def finish_after_restart(self, url, data):
        """What a client does after a crash: HEAD, then the rest of the bytes
        or an empty PATCH at the end (answered once the completion is done)."""
        off = int(self.head(url).header("Upload-Offset"))
        r = self.patch(url, off, data[off:])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Upload-Offset"), str(len(data)))
        vid = r.header("CryoMamba-Volume-Id")
        self.assertIsNotNone(vid, r)
        v = self.srv.get("/v1/volumes/%s" % vid).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())
        return vid

    def uploads_dir(self):
        return sorted(os.listdir(os.path.join(self.srv.state_dir, "uploads")))

    def poll(self, cond, what, timeout=60.0):
        """Polls cond() until it is true (then returns its value) or the
        deadline passes (then fails, naming `what`)."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("timed out waiting for " + what)
            select.select([], [], [], 0.01)


class UploadsTest(TusCase):
    # -- tests ----------------------------------------------------------
    def test_options_advertises_tus(self):
        r = self.req("OPTIONS", "/v1/uploads", headers={"Tus-Resumable": ""})
        self.assertIn(r.status, (200, 204))
        self.assertEqual(r.header("Tus-Version"), "1.0.0")
        self.assertEqual(r.header("Tus-Resumable"), "1.0.0")
        ext = r.header("Tus-Extension").split(",")
        for e in ("creation", "creation-with-upload", "checksum", "termination",
                  "expiration", "concatenation"):
            self.assertIn(e, ext)
        self.assertEqual(int(r.header("Tus-Max-Size")), 32 << 30)
        self.assertEqual(r.header("Tus-Checksum-Algorithm"), "sha1,sha256")

    def test_unsupported_version_is_412(self):
        r = self.req("POST", "/v1/uploads",
                     headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5"})
        self.assertEqual(r.status, 412)
        self.assertEqual(r.header("Tus-Version"), "1.0.0")

    def test_upload_in_chunks_becomes_a_volume(self):
        data = make_mrc()
        url, last = self.upload(data, chunk=1000)
        vid = last.header("CryoMamba-Volume-Id")
        self.assertIsNotNone(vid, last.headers)
        h = self.head(url)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Upload-Offset"), str(len(data)))
        self.assertEqual(h.header("Upload-Length"), str(len(data)))
        self.assertEqual(h.header("Cache-Control"), "no-store")
        v = self.srv.get("/v1/volumes/%s" % vid).json
        self.assertEqual(v["volume_id"], vid)
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(v["shape"], [8, 16, 24])
        self.assertEqual(v["mode"], 2)
        self.assertEqual(v["size_bytes"], len(data))
        self.assertEqual(v["filename"], "t.mrc")
        self.assertAlmostEqual(v["voxel_size"][0], 2.5, places=4)
        self.assertEqual(v["origin"], [3.0, 2.0, 1.0])
        lst = self.srv.get("/v1/volumes").json
        self.assertEqual(lst["count"], 1)
        self.assertEqual(lst["volumes"][0]["volume_id"], vid)

    def test_head_reports_offset_and_metadata(self):
        r = self.create(100, meta(filename="a.mrc"))
        url = r.header("Location")
        self.assertTrue(url.startswith("/v1/uploads/"))
        self.assertIsNotNone(r.header("Upload-Expires"))
        h = self.head(url)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Upload-Offset"), "0")
        self.assertEqual(h.header("Upload-Length"), "100")
        self.assertEqual(h.header("Upload-Metadata"), meta(filename="a.mrc"))
        r = self.patch(url, 0, b"x" * 40)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("Upload-Offset"), "40")
        self.assertEqual(self.head(url).header("Upload-Offset"), "40")

    def test_wrong_offset_is_409(self):
        url = self.create(100).header("Location")
        self.assertEqual(self.patch(url, 0, b"a" * 10).status, 204)
        r = self.patch(url, 5, b"b" * 10)  # overlapping
        assert_error(self, r, 409, "offset_mismatch")
        r = self.patch(url, 50, b"b" * 10)  # ahead
        assert_error(self, r, 409, "offset_mismatch")
        self.assertEqual(self.head(url).header("Upload-Offset"), "10")

    def test_wrong_content_type_is_415(self):
        url = self.create(100).header("Location")
        r = self.req("PATCH", url, body=b"abc",
                     headers={"Content-Type": "application/json", "Upload-Offset": "0"})
        assert_error(self, r, 415, "unsupported_media_type")

    def test_upload_length_changed_is_400(self):
        url = self.create(100).header("Location")
        r = self.patch(url, 0, b"abc", {"Upload-Length": "200"})
        assert_error(self, r, 400, "length_changed")

    def test_past_upload_length_is_413_and_nothing_kept(self):
        url = self.create(10).header("Location")
        r = self.patch(url, 0, b"z" * 11)
        assert_error(self, r, 413, "payload_too_large")
        self.assertEqual(self.head(url).header("Upload-Offset"), "0")

    def test_over_max_upload_bytes_is_413(self):
        r = self.create((32 << 30) + 1, expect=413)
        self.assertEqual(r.json["error"]["code"], "payload_too_large")

    def test_missing_length_is_400(self):
        r = self.req("POST", "/v1/uploads", headers={"Upload-Defer-Length": "1"})
        assert_error(self, r, 400, "invalid_length")

    def test_checksum_verified_per_patch(self):
        url = self.create(100).header("Location")
        good = base64.b64encode(hashlib.sha1(b"q" * 30).digest()).decode()
        r = self.patch(url, 0, b"q" * 30, {"Upload-Checksum": "sha1 " + good})
        self.assertEqual(r.status, 204, r)
        bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
        r = self.patch(url, 30, b"q" * 30, {"Upload-Checksum": "sha256 " + bad})
        self.assertEqual(r.status, 460, r)
        self.assertEqual(self.head(url).header("Upload-Offset"), "30")
        good = base64.b64encode(hashlib.sha256(b"r" * 30).digest()).decode()
        r = self.patch(url, 30, b"r" * 30, {"Upload-Checksum": "sha256 " + good})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Upload-Offset"), "60")

    def test_bad_checksum_header_is_400(self):
        url = self.create(100).header("Location")
        for value in ("md5 AAAA", "sha1 not-base64!", "sha256"):
            r = self.patch(url, 0, b"abc", {"Upload-Checksum": value})
            self.assertEqual(r.status, 400, (value, r))
        self.assertEqual(self.head(url).header("Upload-Offset"), "0")

    def test_unknown_upload_is_404(self):
        r = self.patch("/v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", 0, b"a")
        self.assertEqual(r.status, 404)
        r = self.head("/v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
        self.assertEqual(r.status, 404)
        self.assertIsNone(r.header("Upload-Offset"))

    def test_termination(self):
        url = self.create(100).header("Location")
        self.assertEqual(self.patch(url, 0, b"a" * 10).status, 204)
        r = self.req("DELETE", url)
        self.assertEqual(r.status, 204)
        self.assertEqual(self.head(url).status, 404)
        self.assertEqual(self.patch(url, 10, b"a").status, 404)
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "uploads")), [])

    def test_not_an_mrc_is_422_and_removed(self):
        data = b"this is not a tomogram" * 100
        url = self.create(len(data)).header("Location")
        r = self.patch(url, 0, data)
        assert_error(self, r, 422, "invalid_volume")
        self.assertEqual(self.head(url).status, 404)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)

    def test_truncated_mrc_is_422(self):
        data = make_mrc()
        # A file whose header announces more data than it holds.
        data = data[:-100]
        url = self.create(len(data)).header("Location")
        r = self.patch(url, 0, data)
        assert_error(self, r, 422, "invalid_volume")
        self.assertIn("MRC", r.json["error"]["message"])

    def test_dedup_by_sha256(self):
        data = make_mrc(seed=3)
        _, last = self.upload(data)
        vid = last.header("CryoMamba-Volume-Id")
        # The same bytes again become the same volume.
        _, again = self.upload(data, chunk=4096)
        self.assertEqual(again.header("CryoMamba-Volume-Id"), vid)
        # Announcing the sha256 completes at once, without any byte.
        sha = hashlib.sha256(data).hexdigest()
        r = self.create(len(data), meta(filename="x.mrc", sha256=sha))
        self.assertEqual(r.header("Upload-Offset"), str(len(data)))
        self.assertEqual(r.header("CryoMamba-Volume-Id"), vid)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)

    def test_announced_sha256_must_match(self):
        data = make_mrc(seed=4)
        url = self.create(len(data), meta(sha256="0" * 64)).header("Location")
        r = self.patch(url, 0, data)
        assert_error(self, r, 422, "invalid_volume")

    def test_creation_with_upload(self):
        data = make_mrc(seed=5)
        r = self.req("POST", "/v1/uploads", body=data[:500], headers={
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("Upload-Offset"), "500")
        url = r.header("Location")
        r = self.patch(url, 500, data[500:])
        self.assertEqual(r.status, 204, r)
        self.assertIsNotNone(r.header("CryoMamba-Volume-Id"))

    def test_delete_volume(self):
        _, last = self.upload(make_mrc(seed=6))
        vid = last.header("CryoMamba-Volume-Id")
        r = self.srv.request("DELETE", "/v1/volumes/%s" % vid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.srv.get("/v1/volumes/%s" % vid).status, 404)
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "volumes")), [])

    def test_job_from_volume_id(self):
        _, last = self.upload(make_mrc(shape=(6, 10, 12), seed=30, voxel=3.0))
        vid = last.header("CryoMamba-Volume-Id")
        job = self.srv.create_job({"volume_id": vid}, duration_s=1)
        self.assertEqual(job["volume"]["shape"], [6, 10, 12])
        self.assertAlmostEqual(job["volume"]["voxel_size"][2], 3.0, places=4)
        r = self.srv.request("POST", "/v1/jobs",
                             body={"volume_id": "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"})
        assert_error(self, r, 404, "volume_not_found")
        r = self.srv.request("POST", "/v1/jobs", body={"volume_id": "nope"})
        assert_error(self, r, 400, "invalid_field")
        r = self.srv.request("POST", "/v1/jobs",
                             body={"volume_id": vid, "volume": {"shape": [1, 2, 3]}})
        assert_error(self, r, 400, "invalid_field")

    def test_volumes_paginate(self):
        ids = []
        for seed in range(3):
            _, last = self.upload(make_mrc(shape=(2, 3, 4), seed=10 + seed))
            ids.append(last.header("CryoMamba-Volume-Id"))
        p1 = self.srv.get("/v1/volumes?limit=2").json
        self.assertEqual([v["volume_id"] for v in p1["volumes"]], ids[::-1][:2])
        p2 = self.srv.get("/v1/volumes?limit=2&cursor=%s" % p1["next_cursor"]).json
        self.assertEqual([v["volume_id"] for v in p2["volumes"]], [ids[0]])
        self.assertIsNone(p2.get("next_cursor"))

    def test_big_patch_streams_with_flat_memory(self):
        n = 64 << 20
        url = self.create(n + 1).header("Location")  # stays incomplete
        rss0 = self.srv.rss_kib()
        sock = socket.create_connection(("127.0.0.1", self.srv.port))
        sock.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                      "Content-Type: application/offset+octet-stream\r\n"
                      "Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n" % (url, n)).encode())
        chunk = b"\0" * (1 << 20)
        for _ in range(n >> 20):
            sock.sendall(chunk)
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += sock.recv(4096)
        sock.close()
        self.assertIn(b"204", resp.split(b"\r\n")[0])
        self.assertLess(self.srv.rss_kib() - rss0, 16 << 10, "RSS grew with the body")
        self.assertEqual(self.head(url).header("Upload-Offset"), str(n))

    def test_kill9_mid_upload_then_resume(self):
        data = make_mrc(shape=(16, 64, 64), seed=7)
        url = self.create(len(data)).header("Location")
        half = len(data) // 2
        self.assertEqual(self.patch(url, 0, data[:half]).status, 204)
        # A PATCH cut short by the crash: headers and part of the body.
        sock = socket.create_connection(("127.0.0.1", self.srv.port))
        sock.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                      "Content-Type: application/offset+octet-stream\r\n"
                      "Upload-Offset: %d\r\nContent-Length: %d\r\n\r\n"
                      % (url, half, len(data) - half)).encode() + data[half:half + 1000])
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait(10)
        sock.close()
        old = self.srv
        self.srv = Server(state_dir=old.state_dir).start()
        self.addCleanup(old.cleanup)
        off = int(self.head(url).header("Upload-Offset"))
        self.assertGreaterEqual(off, half)
        self.assertLessEqual(off, half + 1000)
        r = self.patch(url, off, data[off:])
        self.assertEqual(r.status, 204, r)
        v = self.srv.get("/v1/volumes/%s" % r.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())

    def test_patch_on_a_completed_upload_reports_its_volume(self):
        data = make_mrc(shape=(2, 3, 4), seed=3)
        url, last = self.upload(data)
        r = self.patch(url, len(data), b"")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("CryoMamba-Volume-Id"),
                         last.header("CryoMamba-Volume-Id"))

    def _all_but_last_byte_then_stop(self, data):
        url = self.create(len(data), meta(filename="r.mrc")).header("Location")
        self.assertEqual(self.patch(url, 0, data[:-1]).status, 204)
        self.assertEqual(self.srv.stop(), 0)
        uid = url.rsplit("/", 1)[1]
        with open(os.path.join(self.srv.state_dir, "uploads", uid + ".part"), "ab") as f:
            f.write(data[-1:])
        return url, uid

    def test_restored_upload_at_its_length_completes_by_itself(self):
        # The record of the last PATCH committed; the crash came before the
        # completion stored anything.
        data = make_mrc(shape=(4, 8, 8), seed=4)
        url, uid = self._all_but_last_byte_then_stop(data)
        self.edit_record(uid, offset=len(data))
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        vid = self.finish_after_restart(url, data)
        self.assertEqual(self.head(url).header("CryoMamba-Volume-Id"), vid)
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "uploads")), [])

    def test_restored_completing_upload_completes(self):
        data = make_mrc(shape=(4, 8, 8), seed=5)
        url, uid = self._all_but_last_byte_then_stop(data)
        self.edit_record(uid, offset=len(data), state="completing")
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        self.finish_after_restart(url, data)

    def test_restored_invalid_upload_is_removed(self):
        data = b"x" * 3000
        url, uid = self._all_but_last_byte_then_stop(data)
        self.edit_record(uid, offset=len(data), state="completing")
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        r = self.patch(url, len(data), b"")
        self.assertIn(r.status, (404, 422), r)
        self.assertEqual(self.head(url).status, 404)

    def test_kill9_during_validation_then_complete(self):
        # 48 MiB: hashing takes long enough that the kill often lands in the
        # validation; wherever it lands, the client's recovery must work.
        data = make_mrc(shape=(48, 512, 512), seed=6)
        url = self.create(len(data)).header("Location")
        sock = socket.create_connection(("127.0.0.1", self.srv.port))
        sock.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                      "Content-Type: application/offset+octet-stream\r\n"
                      "Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n"
                      % (url, len(data))).encode() + data)
        self.restart()
        sock.close()
        self.finish_after_restart(url, data)

    def test_orphans_are_removed_at_start_up(self):
        import uuid
        data = make_mrc(shape=(2, 3, 4), seed=8)
        _, last = self.upload(data)
        vid = last.header("CryoMamba-Volume-Id")
        keep = self.create(100).header("Location").rsplit("/", 1)[1]
        self.assertEqual(self.patch("/v1/uploads/" + keep, 0, b"y" * 10).status, 204)
        self.assertEqual(self.srv.stop(), 0)
        state = self.srv.state_dir
        # A .part whose record never committed, a volume file renamed before
        # its record committed: both are crash leftovers.
        stray_part = str(uuid.uuid4()) + ".part"
        stray_mrc = str(uuid.uuid4()) + ".mrc"
        with open(os.path.join(state, "uploads", stray_part), "wb") as f:
            f.write(b"z" * 10)
        with open(os.path.join(state, "volumes", stray_mrc), "wb") as f:
            f.write(data)
        self.srv = Server(self.args, state_dir=state).start()
        self.assertEqual(os.listdir(os.path.join(state, "uploads")), [keep + ".part"])
        self.assertEqual(os.listdir(os.path.join(state, "volumes")), [vid + ".mrc"])
        self.assertEqual(self.head("/v1/uploads/" + keep).header("Upload-Offset"), "10")
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        self.assertIn("orphan_removed", self.srv.stderr_tail(20000))

    def test_concurrent_uploads(self):
        datas = [make_mrc(shape=(4, 8, 8), seed=20 + i) for i in range(4)]
        urls = [self.create(len(d)).header("Location") for d in datas]
        socks = []
        for url, d in zip(urls, datas):
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                       "Content-Type: application/offset+octet-stream\r\n"
                       "Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n"
                       % (url, len(d))).encode() + d[:100])
            socks.append(s)
        for s, d in zip(socks, datas):
            s.sendall(d[100:])
        for s in socks:
            resp = b""
            while b"\r\n\r\n" not in resp:
                resp += s.recv(4096)
            self.assertIn(b" 204 ", resp.split(b"\r\n")[0])
            s.close()
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 4)


class ConcatTest(TusCase):
    """tus concatenation: partial uploads, a final made of them."""

    def partial(self, data, chunk=None, headers=None):
        """A complete partial upload of `data`; its path."""
        h = {"Upload-Concat": "partial"}
        h.update(headers or {})
        r = self.create(len(data), extra=h)
        self.assertEqual(r.header("Upload-Concat"), "partial")
        url = r.header("Location")
        off = 0
        chunk = chunk or max(len(data), 1)
        while off < len(data):
            r = self.patch(url, off, data[off:off + chunk], headers)
            self.assertEqual(r.status, 204, r)
            off = int(r.header("Upload-Offset"))
        return url

    def parts(self, data, cuts, **kw):
        bounds = [0] + cuts + [len(data)]
        return [self.partial(data[a:b], **kw) for a, b in zip(bounds, bounds[1:])]

    def final(self, urls, metadata=None, extra=None, body=None):
        h = {"Upload-Concat": "final;" + " ".join(urls)}
        if metadata is not None:
            h["Upload-Metadata"] = metadata
        h.update(extra or {})
        return self.req("POST", "/v1/uploads", body=body, headers=h)

    def wait_final(self, url):
        """Polls HEAD of a final until it names its volume or fails; while
        it is being assembled it must have no Upload-Offset."""
        def done():
            h = self.head(url)
            if h.status == 200 and h.header("CryoMamba-Volume-Id") is None:
                self.assertIsNone(h.header("Upload-Offset"), h)
                return None
            return h
        return self.poll(done, "the final upload to complete")

    def volume_of(self, url, data):
        h = self.wait_final(url)
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.header("Upload-Offset"), str(len(data)))
        self.assertEqual(h.header("Upload-Length"), str(len(data)))
        v = self.srv.get("/v1/volumes/%s" % h.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())
        return v

    def record(self, upload_id):
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"))
        try:
            row = db.execute("SELECT record FROM uploads WHERE id = ?",
                             (upload_id,)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else None

    def fifo_part(self, url):
        """Replaces a complete part's file by a named pipe: a join opening
        it waits until release_fifo(), so the final stays 'being assembled'
        for as long as the test needs (it then finds the part short and
        fails)."""
        path = os.path.join(self.srv.state_dir, "uploads",
                            url.rsplit("/", 1)[1] + ".part")
        os.unlink(path)
        os.mkfifo(path)
        return path

    def release_fifo(self, path):
        def opened():
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no join is waiting on it yet
                return None
        os.close(self.poll(opened, "the join to open the part"))

    def test_final_of_parts_becomes_a_volume(self):
        data = make_mrc(shape=(16, 128, 128), seed=40)
        urls = self.parts(data, [1000, 300000, 700000], chunk=100000)
        h = self.head(urls[0])
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Upload-Concat"), "partial")
        self.assertEqual(h.header("Upload-Offset"), "1000")
        self.assertIsNone(h.header("CryoMamba-Volume-Id"))
        self.assertIsNotNone(h.header("Upload-Expires"))
        # A partial upload, complete as it is, is never a volume.
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)
        # Absolute URLs (as tus-js-client sends), paths, a proxy's prefix.
        forms = ["http://127.0.0.1:%d%s" % (self.srv.port, urls[0]), urls[1],
                 "https://proxy.example/cryo" + urls[2], urls[3] + "/"]
        r = self.final(forms, meta(filename="cat.mrc"))
        self.assertEqual(r.status, 201, r)
        self.assertIsNone(r.header("Upload-Offset"))
        url = r.header("Location")
        self.assertTrue(url.startswith("/v1/uploads/"))
        h = self.head(url)
        self.assertEqual(h.header("Upload-Concat"), "final;" + " ".join(urls))
        self.assertEqual(h.header("Upload-Length"), str(len(data)))
        if h.header("Upload-Offset") is not None:  # done already
            self.assertEqual(h.header("Upload-Offset"), str(len(data)))
        v = self.volume_of(url, data)
        self.assertEqual(v["filename"], "cat.mrc")
        self.assertEqual(v["shape"], [16, 128, 128])
        self.assertEqual(v["size_bytes"], len(data))
        rec = self.record(url.rsplit("/", 1)[1])
        self.assertEqual((rec["state"], rec["concat"], rec["offset"]),
                         ("completed", "final", len(data)))
        self.assertEqual(rec["parts"], [u.rsplit("/", 1)[1] for u in urls])
        # The parts are gone, records and files; only the volume's file stays.
        for u in urls:
            self.assertEqual(self.head(u).status, 404)
        self.poll(lambda: self.uploads_dir() == [], "the upload files to go")
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "volumes")),
                         [v["volume_id"] + ".mrc"])
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        # A final cannot be changed.
        assert_error(self, self.patch(url, 0, b"x"), 403, "upload_is_final")
        assert_error(self, self.patch(url, len(data), b""), 403, "upload_is_final")

    def test_head_of_a_large_final_before_and_after_the_join(self):
        # 64 MiB in 4 parts: the HEAD right after the 201 usually comes
        # before the join is done; either way an offset is only ever the
        # length.
        data = make_mrc(shape=(64, 512, 512), seed=41)
        q = len(data) // 4
        urls = self.parts(data, [q, 2 * q, 3 * q])
        r = self.final(urls)
        self.assertEqual(r.status, 201, r)
        url = r.header("Location")
        h = self.head(url)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Upload-Length"), str(len(data)))
        self.assertIn(h.header("Upload-Offset"), (None, str(len(data))))
        v = self.volume_of(url, data)
        self.assertEqual(self.record(url.rsplit("/", 1)[1])["volume_id"],
                         v["volume_id"])

    def test_final_creation_errors(self):
        a = self.partial(b"a" * 10)
        inc = self.create(10, extra={"Upload-Concat": "partial"}).header("Location")
        self.assertEqual(self.patch(inc, 0, b"b" * 5).status, 204)
        plain = self.create(10).header("Location")
        self.assertEqual(self.patch(plain, 0, b"c" * 10).status, 422)  # gone
        plain = self.create(10).header("Location")
        unknown = "/v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
        e = assert_error(self, self.final([a, inc]), 400, "part_incomplete")
        self.assertIn(inc.rsplit("/", 1)[1], e["message"])
        assert_error(self, self.final([a, unknown]), 404, "part_not_found")
        assert_error(self, self.final([a, plain]), 400, "part_not_partial")
        assert_error(self, self.final([a, a]), 400, "part_duplicate")
        assert_error(self, self.final([a, "/v1/jobs/" + unknown[12:]]), 400,
                     "invalid_concat")
        assert_error(self, self.final([a, "/v1/uploads/nope"]), 400, "invalid_concat")
        assert_error(self, self.final([]), 400, "invalid_concat")
        r = self.req("POST", "/v1/uploads",
                     headers={"Upload-Concat": "both", "Upload-Length": "10"})
        assert_error(self, r, 400, "invalid_concat")
        assert_error(self, self.final([a], extra={"Upload-Length": "10"}), 400,
                     "invalid_length")
        assert_error(self, self.final([a], body=b"xyz"), 400, "invalid_concat")
        r = self.final([a], body=b"xyz", extra={
            "Content-Type": "application/offset+octet-stream"})
        assert_error(self, r, 400, "invalid_concat")
        many = ["/v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-%012d" % i for i in range(65)]
        assert_error(self, self.final(many), 400, "too_many_parts")
        bad_meta = self.final([a], metadata="sha256 " + base64.b64encode(b"x").decode())
        assert_error(self, bad_meta, 400, "invalid_metadata")
        # Nothing was created or changed.
        self.assertEqual(self.head(a).header("Upload-Offset"), "10")
        self.assertEqual(self.head(inc).header("Upload-Offset"), "5")
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)
        self.assertEqual(self.uploads_dir(), sorted(
            u.rsplit("/", 1)[1] + ".part" for u in (a, inc)))
        # The part is still good for a final.
        r = self.final([a])
        self.assertEqual(r.status, 201, r)

    def test_parts_are_held_while_a_final_is_assembled(self):
        data = make_mrc(shape=(2, 3, 4), seed=42)
        urls = self.parts(data, [300])
        fifo = self.fifo_part(urls[1])
        try:
            f1 = self.final(urls)
            self.assertEqual(f1.status, 201, f1)
            f1 = f1.header("Location")
            h = self.head(f1)
            self.assertEqual(h.status, 200)
            self.assertIsNone(h.header("Upload-Offset"))
            self.assertEqual(h.header("Upload-Length"), str(len(data)))
            # No PATCH, no termination, while a final is made of them.
            for u in urls:
                assert_error(self, self.req("DELETE", u), 409, "part_in_use")
            assert_error(self, self.patch(urls[0], 300, b""), 409, "part_in_use")
            assert_error(self, self.patch(f1, 0, b"x"), 403, "upload_is_final")
            # The same parts may make another final (a retried POST).
            f2 = self.final(urls)
            self.assertEqual(f2.status, 201, f2)
            f2 = f2.header("Location")
        finally:
            self.release_fifo(fifo)
        # The part proved short: both finals fail, kept with the reason.
        for f in (f1, f2):
            h = self.poll(lambda: (lambda r: r if r.status != 200 else None)(
                self.head(f)), "the final to fail")
            self.assertEqual(h.status, 500, h)
            self.assertIn("shorter than its length",
                          h.header("CryoMamba-Upload-Error"))
            self.assertTrue(h.header("CryoMamba-Upload-Error").startswith("internal "))
            self.assertIsNone(h.header("Upload-Offset"))
            self.poll(lambda: self.record(f.rsplit("/", 1)[1])["state"] == "failed",
                      "the failed state to be stored")
        # Their files are gone, the parts are free again.
        self.poll(lambda: self.uploads_dir() == sorted(
            u.rsplit("/", 1)[1] + ".part" for u in urls), "the finals' files to go")
        for u in urls:
            self.assertEqual(self.req("DELETE", u).status, 204)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)

    def test_terminating_a_final_while_it_is_assembled(self):
        data = make_mrc(shape=(2, 3, 4), seed=43)
        urls = self.parts(data, [300])
        fifo = self.fifo_part(urls[1])
        try:
            f = self.final(urls).header("Location")
            self.assertEqual(self.req("DELETE", f).status, 204)
            self.assertEqual(self.head(f).status, 404)
            # Its parts are free at once.
            self.assertEqual(self.req("DELETE", urls[0]).status, 204)
        finally:
            self.release_fifo(fifo)
        fid = f.rsplit("/", 1)[1]
        self.poll(lambda: fid + ".part" not in self.uploads_dir(),
                  "the terminated final's file to go")
        self.assertEqual(self.req("DELETE", urls[1]).status, 204)
        self.poll(lambda: self.uploads_dir() == [], "the files to go")
        self.assertIsNone(self.record(fid))
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)

    def test_final_dedup_by_sha256(self):
        data = make_mrc(shape=(4, 8, 8), seed=44)
        _, last = self.upload(data)
        vid = last.header("CryoMamba-Volume-Id")
        # Announced: complete at once, no join, the parts go.
        urls = self.parts(data, [2000])
        r = self.final(urls, meta(sha256=hashlib.sha256(data).hexdigest()))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("Upload-Offset"), str(len(data)))
        self.assertEqual(r.header("CryoMamba-Volume-Id"), vid)
        for u in urls:
            self.assertEqual(self.head(u).status, 404)
        # Not announced: joined, then found by its sha256.
        urls = self.parts(data, [100, 2000])
        r = self.final(urls)
        self.assertEqual(r.status, 201, r)
        v = self.volume_of(r.header("Location"), data)
        self.assertEqual(v["volume_id"], vid)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        self.poll(lambda: self.uploads_dir() == [], "the files to go")

    def test_invalid_final_fails_and_keeps_its_parts(self):
        data = b"not a tomogram" * 200
        urls = self.parts(data, [1000])
        f = self.final(urls).header("Location")
        h = self.wait_final(f)
        self.assertEqual(h.status, 422, h)
        self.assertTrue(h.header("CryoMamba-Upload-Error").startswith(
            "invalid_volume not a valid MRC2014 file"),
            h.header("CryoMamba-Upload-Error"))
        assert_error(self, self.patch(f, 0, b"x"), 403, "upload_is_final")
        for u in urls:
            self.assertEqual(self.head(u).header("Upload-Offset"),
                             self.head(u).header("Upload-Length"))
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)
        # Valid bytes, but not the announced sha256: failed too.
        good = make_mrc(shape=(2, 3, 4), seed=52)
        r = self.final(self.parts(good, [100]), meta(sha256="0" * 64))
        h = self.wait_final(r.header("Location"))
        self.assertEqual(h.status, 422, h)
        self.assertIn("sha256", h.header("CryoMamba-Upload-Error"))
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)
        # A failed final survives a restart as it is, and can be removed.
        self.restart(signal.SIGTERM)
        self.assertEqual(self.head(f).status, 422)
        self.assertEqual(self.req("DELETE", f).status, 204)
        self.assertEqual(self.head(f).status, 404)

    def test_complete_parts_survive_a_restart(self):
        data = make_mrc(shape=(4, 8, 8), seed=45)
        urls = self.parts(data, [700])
        self.restart()  # kill -9
        for u in urls:
            h = self.head(u)
            self.assertEqual(h.status, 200, h)
            self.assertEqual(h.header("Upload-Offset"), h.header("Upload-Length"))
        self.restart(signal.SIGTERM)
        r = self.final(urls)
        self.assertEqual(r.status, 201, r)
        self.volume_of(r.header("Location"), data)

    def test_kill9_during_the_join_then_restart(self):
        # The kill lands in the join or the validation of 64 MiB; after the
        # restart the final completes once and its parts go.
        data = make_mrc(shape=(64, 512, 512), seed=46)
        q = len(data) // 4
        urls = self.parts(data, [q, 2 * q, 3 * q])
        r = self.final(urls, meta(filename="big.mrc"))
        self.assertEqual(r.status, 201, r)
        url = r.header("Location")
        self.restart()
        v = self.volume_of(url, data)
        self.assertEqual(v["filename"], "big.mrc")
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        for u in urls:
            self.assertEqual(self.head(u).status, 404)
        self.poll(lambda: self.uploads_dir() == [], "the files to go")
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "volumes")),
                         [v["volume_id"] + ".mrc"])
        # Once more after completion: nothing changes.
        self.restart()
        h = self.head(url)
        self.assertEqual(h.header("CryoMamba-Volume-Id"), v["volume_id"])
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        self.assertEqual(self.uploads_dir(), [])

    def test_sigterm_during_the_join_then_restart(self):
        # A clean stop while a final is assembled (or validated) exits 0
        # (restart() checks it); the next server completes the final.
        data = make_mrc(shape=(64, 512, 512), seed=51)
        q = len(data) // 4
        urls = self.parts(data, [q, 2 * q, 3 * q])
        r = self.final(urls)
        self.assertEqual(r.status, 201, r)
        self.restart(signal.SIGTERM)
        self.volume_of(r.header("Location"), data)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        self.poll(lambda: self.uploads_dir() == [], "the files to go")

    def test_parts_of_a_completed_final_go_after_a_restart(self):
        # The final's completed record committed; the crash came before its
        # parts' removals did.
        data = make_mrc(shape=(4, 8, 8), seed=47)
        urls = self.parts(data, [900])
        f = self.final(urls).header("Location")
        vid = self.volume_of(f, data)["volume_id"]
        self.assertEqual(self.srv.stop(), 0)
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"))
        with db:
            for i, u in enumerate(urls):
                uid = u.rsplit("/", 1)[1]
                db.execute("INSERT INTO uploads (id, record) VALUES (?, ?)", (uid, json.dumps({
                    "id": uid, "state": "completed", "concat": "partial",
                    "length": 10, "offset": 10, "created_us": 0,
                    "expires_us": 2 ** 62, "owner_ip": "", "owner_token": "",
                    "filename": "", "sha256": "", "metadata": "", "volume_id": "",
                    "parts": []})))
                with open(os.path.join(self.srv.state_dir, "uploads", uid + ".part"), "wb") as fh:
                    fh.write(b"p" * 10)
        db.close()
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        for u in urls:
            self.assertEqual(self.head(u).status, 404)
        self.poll(lambda: self.uploads_dir() == [], "the parts' files to go")
        self.assertEqual(self.head(f).header("CryoMamba-Volume-Id"), vid)

    def test_completion_cut_after_the_volume_record(self):
        # The volume's record committed, the upload's completed record did
        # not: the upload completes again from its file and finds the volume.
        data = make_mrc(shape=(4, 8, 8), seed=48)
        url, last = self.upload(data)
        vid = last.header("CryoMamba-Volume-Id")
        self.assertEqual(self.srv.stop(), 0)
        uid = url.rsplit("/", 1)[1]
        state = self.srv.state_dir
        shutil.copy(os.path.join(state, "volumes", vid + ".mrc"),
                    os.path.join(state, "uploads", uid + ".part"))
        self.edit_record(uid, state="completing", volume_id="")
        self.srv = Server(self.args, state_dir=state).start()
        self.assertEqual(self.finish_after_restart(url, data), vid)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)
        self.poll(lambda: self.uploads_dir() == [], "the upload's file to go")

    def test_volume_record_without_its_file_is_removed(self):
        data = make_mrc(shape=(4, 8, 8), seed=49)
        _, last = self.upload(data)
        vid = last.header("CryoMamba-Volume-Id")
        self.assertEqual(self.srv.stop(), 0)
        os.unlink(os.path.join(self.srv.state_dir, "volumes", vid + ".mrc"))
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        self.assertEqual(self.srv.get("/v1/volumes/%s" % vid).status, 404)
        self.assertIn("volumes.file_missing", self.srv.stderr_tail(20000))
        # The same bytes make a volume again (the stale sha256 is gone).
        _, again = self.upload(data)
        self.assertNotEqual(again.header("CryoMamba-Volume-Id"), vid)


class ConcatAuthTest(TusCase):
    """A final may only be made of the parts of its own token."""

    def setUp(self):
        self.tmp = self.enterContext_tmp()
        lines = ["%s write" % hashlib.sha256(t.encode()).hexdigest()
                 for t in ("alice", "bob")]
        path = os.path.join(self.tmp, "auth")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.args = ["--auth-file", path]
        super().setUp()

    def enterContext_tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="cryomamba-auth-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_parts_of_another_token_are_refused(self):
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        data = make_mrc(shape=(2, 3, 4), seed=50)
        url = self.create(len(data), extra=dict(alice, **{"Upload-Concat": "partial"}))
        url = url.header("Location")
        h = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        self.assertEqual(self.req("PATCH", url, body=data, headers=dict(h, **alice)).status, 204)
        fin = {"Upload-Concat": "final;" + url}
        r = self.req("POST", "/v1/uploads", headers=dict(fin, **bob))
        assert_error(self, r, 403, "part_forbidden")
        r = self.req("POST", "/v1/uploads", headers=dict(fin, **alice))
        self.assertEqual(r.status, 201, r)
        done = self.poll(lambda: (lambda x: x if x.header("CryoMamba-Volume-Id") else None)(
            self.req("HEAD", r.header("Location"), headers=alice)), "the final")
        self.assertIsNotNone(done.header("CryoMamba-Volume-Id"))


class UploadLimitsTest(unittest.TestCase):
    def tearDown(self):
        self.srv.cleanup()

    def start(self, *args):
        self.srv = Server(list(args)).start()
        return self.srv

    def post(self, length):
        return self.srv.request("POST", "/v1/uploads",
                                headers={"Tus-Resumable": "1.0.0",
                                         "Upload-Length": str(length)})

    def test_limits_in_server_info(self):
        self.start("--max-upload-bytes", "1000", "--storage-quota-bytes", "5000",
                   "--max-uploads-per-ip", "3", "--max-uploads-per-token", "4",
                   "--upload-expiry", "60")
        lim = self.srv.get("/v1/server/info").json["limits"]
        self.assertEqual(lim["max_upload_bytes"], 1000)
        self.assertEqual(lim["storage_quota_bytes"], 5000)
        self.assertEqual(lim["max_uploads_per_ip"], 3)
        self.assertEqual(lim["max_uploads_per_token"], 4)
        self.assertEqual(lim["upload_expiry_s"], 60)

    def test_max_upload_bytes(self):
        self.start("--max-upload-bytes", "1000")
        self.assertEqual(self.post(1000).status, 201)
        assert_error(self, self.post(1001), 413, "payload_too_large")

    def test_quota_is_507(self):
        self.start("--storage-quota-bytes", "3000")
        self.assertEqual(self.post(2000).status, 201)
        r = self.post(2000)
        assert_error(self, r, 507, "insufficient_storage")
        self.assertFalse(r.json["error"]["retryable"])

    def test_quota_checked_on_patch(self):
        # Created within the quota; the server comes back with less room.
        self.start("--storage-quota-bytes", "3000")
        url = self.post(2000).header("Location")
        self.assertEqual(self.srv.stop(), 0)
        old = self.srv
        self.addCleanup(old.cleanup)
        self.srv = Server(["--storage-quota-bytes", "1000"],
                          state_dir=old.state_dir).start()
        h = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
             "Content-Type": "application/offset+octet-stream"}
        r = self.srv.request("PATCH", url, raw=b"a" * 1500, headers=h)
        assert_error(self, r, 507, "insufficient_storage")
        self.assertFalse(r.json["error"]["retryable"])
        r = self.srv.request("PATCH", url, raw=b"a" * 600, headers=h)
        self.assertEqual(r.status, 204, r)
        h["Upload-Offset"] = "600"
        r = self.srv.request("PATCH", url, raw=b"a" * 500, headers=h)
        assert_error(self, r, 507, "insufficient_storage")
        head = self.srv.request("HEAD", url, headers={"Tus-Resumable": "1.0.0"})
        self.assertEqual(head.header("Upload-Offset"), "600")

    def test_final_over_max_upload_bytes_is_413(self):
        self.start("--max-upload-bytes", "1000")
        urls = []
        for _ in range(2):
            h = {"Tus-Resumable": "1.0.0", "Upload-Length": "600",
                 "Upload-Concat": "partial"}
            url = self.srv.request("POST", "/v1/uploads", headers=h).header("Location")
            h = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                 "Content-Type": "application/offset+octet-stream"}
            self.assertEqual(self.srv.request("PATCH", url, raw=b"p" * 600,
                                              headers=h).status, 204)
            urls.append(url)
        r = self.srv.request("POST", "/v1/uploads", headers={
            "Tus-Resumable": "1.0.0", "Upload-Concat": "final;" + " ".join(urls)})
        assert_error(self, r, 413, "payload_too_large")
        self.assertEqual(self.srv.get("/v1/server/info").json["limits"]["max_upload_parts"], 64)

    def test_uploads_per_address(self):
        self.start("--max-uploads-per-ip", "2")
        self.assertEqual(self.post(10).status, 201)
        self.assertEqual(self.post(10).status, 201)
        assert_error(self, self.post(10), 429, "too_many_uploads")

    def test_uploads_per_token(self):
        self.srv = Server(["--max-uploads-per-token", "1", "--max-uploads-per-ip", "0"],
                          env={"CRYOMAMBA_TOKEN": "secret"}).start()
        h = {"Tus-Resumable": "1.0.0", "Upload-Length": "10",
             "Authorization": "Bearer secret"}
        self.assertEqual(self.srv.request("POST", "/v1/uploads", headers=h).status, 201)
        assert_error(self, self.srv.request("POST", "/v1/uploads", headers=h),
                     429, "too_many_uploads")
        r = self.srv.request("POST", "/v1/uploads",
                             headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
        self.assertEqual(r.status, 401)

    def test_expired_uploads_are_removed(self):
        self.start("--upload-expiry", "0.5")
        url = self.post(10).header("Location")
        # Housekeeping runs every second: poll HEAD until it is gone.
        for _ in range(400):
            r = self.srv.request("HEAD", url, headers={"Tus-Resumable": "1.0.0"})
            if r.status == 404:
                break
            import select
            select.select([], [], [], 0.025)
        self.assertEqual(r.status, 404)
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "uploads")), [])


if __name__ == "__main__":
    main()
