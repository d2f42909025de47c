#!/usr/bin/python3
"""Uploads (docs/protocol.md, "Uploads" and "Volumes"): tus 1.0.0 under
/v1/uploads against the real server with http.client and raw sockets:
creation, PATCH, HEAD, checksums, termination, validation, dedup,
volumes, expiry and limits. Concatenation: test_uploads_concat.py;
kill -9, restarts and crash windows: test_uploads_crash.py."""

import base64
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import RSS_SCALE, RawHTTP, Server, assert_error, main  # noqa: E402
from tus_util import TusCase, make_mrc, meta  # noqa: E402


class UploadsTest(TusCase):
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
        self.assertLess(self.srv.rss_kib() - rss0, (16 << 10) * RSS_SCALE,
                        "RSS grew with the body")
        self.assertEqual(self.head(url).header("Upload-Offset"), str(n))

    def test_patch_on_a_completed_upload_reports_its_volume(self):
        data = make_mrc(shape=(2, 3, 4), seed=3)
        url, last = self.upload(data)
        r = self.patch(url, len(data), b"")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("CryoMamba-Volume-Id"),
                         last.header("CryoMamba-Volume-Id"))

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


class ValidationStepsTest(TusCase):
    """The validation hashes 32 MiB a step; step k here first waits for a
    byte on the named pipe <dir>/k (the test-only CRYOMAMBA_TEST_CHECK_FIFOS),
    so the test knows a step is in flight and decides when it goes on."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-steps-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.fifos = [os.path.join(self.tmp, str(k)) for k in range(2)]
        for f in self.fifos:
            os.mkfifo(f)
        self.srv = Server(env={"CRYOMAMBA_TEST_CHECK_FIFOS": self.tmp}).start()

    def start_completion(self, data):
        """An upload of `data`, its bytes sent in one PATCH whose answer
        waits for the validation; the upload's path and the connection."""
        url = self.create(len(data)).header("Location")
        raw = RawHTTP(self.srv.port)
        self.addCleanup(raw.close)
        raw.send(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                  "Content-Type: application/offset+octet-stream\r\n"
                  "Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n"
                  % (url, len(data))).encode() + data)
        return url, raw

    def stopped_after(self):
        """The bytes hashed when the validation stopped (its log line)."""
        lines = [json.loads(l) for l in self.srv.stderr_tail(1 << 20).splitlines()
                 if "upload.validation_stopped" in l]
        self.assertEqual(len(lines), 1, lines)
        return lines[0]["hashed"]

    def test_delete_during_validation_is_prompt_and_leaves_nothing(self):
        data = make_mrc(shape=(40, 512, 512), seed=60)  # two steps
        url, raw = self.start_completion(data)
        step = self.step_waiting(self.fifos[0])
        # The first step is in flight (held): the termination does not wait.
        t0 = time.monotonic()
        r = self.req("DELETE", url)
        self.assertEqual(r.status, 204, r)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(self.head(url).status, 404)
        self.step_go(step)
        # The check stops after that step: no second step, no volume.
        self.wait_log("upload.validation_stopped")
        self.assertEqual(self.stopped_after(), 32 << 20)
        self.assertTrue(self.no_step_waiting(self.fifos[1]))
        assert_error(self, raw.read_response(), 404, "upload_not_found")
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 0)
        self.poll(lambda: self.uploads_dir() == [], "the upload's file to go")
        self.assertEqual(os.listdir(os.path.join(self.srv.state_dir, "volumes")), [])

    def test_sigterm_during_validation_stops_it_and_a_restart_completes(self):
        data = make_mrc(shape=(40, 512, 512), seed=61)
        url, raw = self.start_completion(data)
        step = self.step_waiting(self.fifos[0])
        self.srv.proc.send_signal(signal.SIGTERM)
        self.step_go(step)
        self.assertEqual(self.srv.proc.wait(10), 0)
        self.assertEqual(self.stopped_after(), 32 << 20)
        old = self.srv
        self.addCleanup(old.cleanup)
        self.srv = Server(state_dir=old.state_dir).start()  # steps run freely
        self.finish_after_restart(url, data)
        self.assertEqual(self.srv.get("/v1/volumes").json["count"], 1)

    def test_steps_make_the_same_volume(self):
        data = make_mrc(shape=(40, 512, 512), seed=62)
        url, raw = self.start_completion(data)
        for f in self.fifos:
            self.step_go(self.step_waiting(f))
        r = raw.read_response()
        self.assertEqual(r.status, 204, r)
        v = self.srv.get("/v1/volumes/%s" % r.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(v["shape"], [40, 512, 512])
        self.assertTrue(self.no_step_waiting(self.fifos[1]))


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
        # Unregistered when its removal commits, then its file goes.
        deadline = time.monotonic() + 60
        while os.listdir(os.path.join(self.srv.state_dir, "uploads")) != []:
            self.assertLess(time.monotonic(), deadline,
                            "the expired upload's file never went")
            select.select([], [], [], 0.01)


if __name__ == "__main__":
    main()
