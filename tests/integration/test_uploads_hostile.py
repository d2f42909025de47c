#!/usr/bin/python3
"""Uploads against a hostile client (docs/protocol.md, "Uploads"): bodies
longer than the upload, chunked and missing lengths, signed and repeated
headers, two PATCHes at once, PATCHes that stall or vanish at every
interesting point of the body, HEAD floods, a thousand one-byte PATCHes,
metadata with thousands of keys, filenames that look like paths, ids that
try to leave /v1/uploads. Each attack asserts what the server must do and
that what it keeps is exactly what was sent."""

import base64
import hashlib
import http.client
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import RawHTTP, assert_error, main  # noqa: E402
from tus_util import TUS, TusCase, make_mrc  # noqa: E402

BUF = 1 << 20  # the server's PATCH buffer: a write to disk per full one


def patch_head(url, offset, length=None, extra=""):
    """A PATCH's request line and headers; Content-Length unless None."""
    cl = "" if length is None else "Content-Length: %d\r\n" % length
    return ("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            "Upload-Offset: %s\r\n%s%s\r\n" % (url, offset, cl, extra)).encode()


class HostileTest(TusCase):
    args = ("--http-body-timeout", "1")

    def part_file(self, url):
        return os.path.join(self.srv.state_dir, "uploads",
                            url.rsplit("/", 1)[1] + ".part")

    def on_disk(self, url):
        try:
            with open(self.part_file(url), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def raw(self):
        c = RawHTTP(self.srv.port, timeout=10)
        self.addCleanup(c.close)
        return c

    def settled_offset(self, url):
        """The offset once no PATCH is writing: an empty PATCH at HEAD's
        offset succeeds only then (a PATCH whose client left is still
        finishing while it gets 409)."""
        deadline = time.monotonic() + 30
        while True:
            off = int(self.head(url).header("Upload-Offset"))
            r = self.patch(url, off, b"")
            if r.status == 204:
                return off
            self.assertEqual(r.status, 409, r)
            self.assertLess(time.monotonic(), deadline, "never settled")

    # -- lengths ---------------------------------------------------------
    def test_body_past_upload_length_is_refused_and_nothing_written(self):
        url = self.create(11).header("Location")  # stays incomplete
        assert_error(self, self.patch(url, 0, b"z" * 12), 413, "payload_too_large")
        # Declared huge and never sent: told at once, the connection ends.
        c = self.raw()
        c.send(patch_head(url, 0, 10 ** 12))
        assert_error(self, c.read_response(), 413, "payload_too_large")
        self.assertTrue(c.at_eof(10))
        self.assertEqual(self.head(url).header("Upload-Offset"), "0")
        self.assertEqual(self.on_disk(url), b"")
        # The same for a creation with a body longer than itself.
        r = self.req("POST", "/v1/uploads", body=b"y" * 20, headers={
            "Upload-Length": "10", "Content-Type": "application/offset+octet-stream"})
        assert_error(self, r, 413, "payload_too_large")
        self.assertEqual(self.uploads_dir(), [])
        # What fits is taken.
        r = self.patch(url, 0, b"z" * 10)
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, "10"))

    def test_chunked_and_unframed_bodies(self):
        url = self.create(10).header("Location")
        c = self.raw()
        c.send(patch_head(url, 0, extra="Transfer-Encoding: chunked\r\n")
               + b"5\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, "5"))
        c.send(patch_head(url, 5, extra="Transfer-Encoding: chunked\r\n")
               + b"8\r\nworld!!!\r\n0\r\n\r\n")
        assert_error(self, c.read_response(), 413, "payload_too_large")
        self.assertEqual(self.head(url).header("Upload-Offset"), "5")
        # A refused chunked PATCH (its length unknown) is told at once.
        c = self.raw()
        c.send(patch_head(url, 0, extra="Transfer-Encoding: chunked\r\n"))
        assert_error(self, c.read_response(), 409, "offset_mismatch")
        self.assertTrue(c.at_eof(10))
        # No Content-Length, no Transfer-Encoding: an empty body.
        c = self.raw()
        c.send(patch_head(url, 5))
        r = c.read_response()
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, "5"))
        self.assertEqual(self.on_disk(url)[:5], b"hello")

    def test_offsets_with_signs_spaces_and_junk(self):
        url = self.create(10).header("Location")
        for bad in ("+0", "-0", "0x0", "0,0", "0 0", "1e0", ""):
            c = self.raw()
            c.send(patch_head(url, bad, 1) + b"x")
            assert_error(self, c.read_response(), 400, "invalid_offset")
        c = self.raw()
        c.send(patch_head(url, " 0 ", 1) + b"x")  # spaces around are no part
        self.assertEqual(c.read_response().status, 204)
        self.assertEqual(self.head(url).header("Upload-Offset"), "1")

    def test_repeated_tus_headers_are_refused(self):
        url = self.create(10).header("Location")
        c = self.raw()
        c.send(patch_head(url, 0, 1, "Upload-Offset: 5\r\n") + b"x")
        assert_error(self, c.read_response(), 400, "invalid_offset")
        for extra, code in (("Upload-Length: 5\r\n", "invalid_length"),
                            ("Upload-Metadata: a eA==\r\nUpload-Metadata: b eA==\r\n",
                             "invalid_metadata")):
            c = self.raw()
            c.send(("POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                    "Upload-Length: 10\r\n%s\r\n" % extra).encode())
            assert_error(self, c.read_response(), 400, code)
        self.assertEqual(self.head(url).header("Upload-Offset"), "0")
        self.assertEqual(len(self.uploads_dir()), 0)

    # -- concurrency and cut-short bodies -----------------------------------
    def test_two_patches_at_once_one_is_409(self):
        data = os.urandom(2 * BUF)
        url = self.create(len(data) + 1).header("Location")  # stays incomplete
        a = self.raw()
        a.send(patch_head(url, 0, len(data)) + data[:BUF + 1])
        # A full buffer went to disk: the first PATCH owns the upload.
        self.poll(lambda: os.path.exists(self.part_file(url)), "the first write")
        assert_error(self, self.patch(url, 0, b"b" * 5), 409, "upload_busy")
        a.send(data[BUF + 1:])
        r = a.read_response()
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, str(len(data))))
        self.assertEqual(self.on_disk(url), data)

    def test_stalled_patch_keeps_what_it_sent_and_resumes(self):
        data = make_mrc(shape=(4, 8, 8), seed=70)
        url = self.create(len(data)).header("Location")
        c = self.raw()
        c.send(patch_head(url, 0, len(data)) + data[:1000])
        r = c.read_response()  # --http-body-timeout 1
        assert_error(self, r, 408, "request_timeout")
        self.assertTrue(c.at_eof(10))
        # HEAD waits for what the stalled PATCH kept to be committed.
        self.assertEqual(self.head(url).header("Upload-Offset"), "1000")
        self.assertEqual(self.on_disk(url)[:1000], data[:1000])
        r = self.patch(url, 1000, data[1000:])
        self.assertEqual(r.status, 204, r)
        v = self.srv.get("/v1/volumes/%s" % r.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())

    def test_disconnect_at_every_point_keeps_a_true_prefix(self):
        data = make_mrc(shape=(12, 256, 256), seed=71)  # 3 MiB + 1 KiB
        url = self.create(len(data)).header("Location")
        off = 0
        # (bytes sent before the client goes, how it goes)
        cuts = [(0, "fin"), (1, "fin"), (BUF - 1, "fin"), (1, "fin"),
                (BUF, "fin"), (BUF + 7, "rst"), (3, "rst"), (0, "rst"),
                (None, "fin")]  # None: all but the last 20 bytes
        for k, how in cuts:
            k = len(data) - off - 20 if k is None else k
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(patch_head(url, off, len(data) - off) + data[off:off + k])
            if how == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            s.close()
            got = self.settled_offset(url)
            if how == "fin":  # every byte before the FIN arrived
                self.assertEqual(got, off + k, (k, how))
            self.assertGreaterEqual(got, off, (k, how))
            self.assertLessEqual(got, off + k, (k, how))
            self.assertEqual(self.on_disk(url)[:got], data[:got], (k, how))
            off = got
        r = self.patch(url, off, data[off:])
        self.assertEqual(r.status, 204, r)
        v = self.srv.get("/v1/volumes/%s" % r.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())

    def connections_gone(self):
        """Polls until the server counts no connection but the one asking
        (it has seen every close the test made)."""
        def gone():
            body = self.srv.get("/metrics").body.decode()
            return "\ncryomamba_connections 1\n" in "\n" + body
        self.poll(gone, "the server to see the connections close")

    def test_resume_right_after_a_vanished_patch(self):
        # A client aborts mid-PATCH and resumes on a new connection
        # (tus-js-client's abort() then start()): once the server has seen
        # the close, HEAD and the PATCH wait for what the vanished one kept
        # instead of telling an older offset or answering 409 upload_busy.
        data = os.urandom(3 * BUF)
        for k in (10, BUF + 10, 3 * BUF - 1):
            url = self.create(len(data) + 1).header("Location")  # incomplete
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(patch_head(url, 0, len(data)) + data[:k])
            s.close()
            self.connections_gone()
            self.assertEqual(self.head(url).header("Upload-Offset"), str(k))
            r = self.patch(url, k, data[k:])
            self.assertEqual(r.status, 204, r)
            self.assertEqual(self.on_disk(url), data)
            # And a PATCH sent at once, without its HEAD, waits too.
            url = self.create(len(data) + 1).header("Location")
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(patch_head(url, 0, len(data)) + data[:k])
            s.close()
            self.connections_gone()
            r = self.patch(url, k, data[k:])
            self.assertEqual(r.status, 204, r)
            self.assertEqual(self.on_disk(url), data)

    def part_fds(self):
        """How many descriptors the server holds on upload files."""
        d = "/proc/%d/fd" % self.srv.proc.pid
        n = 0
        for f in os.listdir(d):
            try:
                n += os.readlink(os.path.join(d, f)).endswith(".part")
            except OSError:  # closed meanwhile
                pass
        return n

    def test_patches_that_keep_nothing_close_their_file(self):
        # Refused mid-body after a buffer was written (413, chunked), or cut
        # short with a checksum (a partial body cannot be checked): nothing
        # is kept and the file is closed, not left open for good.
        data = os.urandom(3 * BUF)
        url = self.create(len(data) + 1).header("Location")  # incomplete
        for _ in range(3):
            c = self.raw()
            body = data + b"+-"  # one byte past Upload-Length
            c.send(patch_head(url, 0, extra="Transfer-Encoding: chunked\r\n")
                   + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
            assert_error(self, c.read_response(), 413, "payload_too_large")
            self.assertEqual(self.part_fds(), 0)
            c.close()
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(patch_head(url, 0, len(data),
                                 "Upload-Checksum: sha256 %s\r\n" % digest)
                      + data[:2 * BUF + 5])
            s.close()
            self.connections_gone()
            self.assertEqual(self.head(url).header("Upload-Offset"), "0")
            self.assertEqual(self.part_fds(), 0)
        r = self.patch(url, 0, data, {"Upload-Checksum": "sha256 " + digest})
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, str(len(data))))
        self.assertEqual(self.on_disk(url), data)

    def test_a_patch_of_a_terminated_upload_makes_no_file(self):
        # A PATCH still running when its upload is deleted: its bytes never
        # reach a file, before or after its client goes, whether it had
        # written a buffer already (k > BUF) or not.
        urls = []
        for k in (100, BUF + 100):
            url = self.create(4 * BUF).header("Location")
            urls.append(url)
            c = self.raw()
            c.send(patch_head(url, 0, 4 * BUF) + os.urandom(k))
            self.poll(lambda: self.patch(url, 0, b"").status == 409,
                      "the PATCH to own the upload")
            self.assertEqual(self.req("DELETE", url).status, 204)
            self.assertEqual(self.uploads_dir(), [])
            c.close()
            self.connections_gone()
            self.assertEqual(self.head(url).status, 404)
        # A graceful stop lets every queued write run to its end: whatever
        # those PATCHes queued has landed when the directory is read.
        self.assertEqual(self.srv.stop(), 0)
        self.assertEqual(self.uploads_dir(), [])

    def test_refused_patch_with_expect_gets_no_100(self):
        # A client that waits for "100 Continue" gets the refusal instead,
        # without sending its body, small or large; an accepted PATCH gets
        # the 100, then its answer.
        url = self.create(10 ** 7).header("Location")
        expect = "Expect: 100-continue\r\n"
        for head, status, code in (
                (patch_head(url, 5, 10, expect), 409, "offset_mismatch"),
                (patch_head(url, 5, 10 ** 7, expect), 409, "offset_mismatch"),
                (patch_head(url, 0, 10, expect + "Upload-Checksum: md5 AAAA\r\n"),
                 400, "unsupported_checksum"),
                (patch_head(url, 0, 11 ** 7, expect), 413, "payload_too_large"),
                (patch_head("/v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
                            0, 10, expect), 404, "upload_not_found")):
            c = self.raw()
            c.send(head)
            r = c.read_response(no_body=True)
            self.assertEqual(r.status, status, (head, r.status))
            self.assertEqual(r.header("Connection"), "close")
            body = c.read_exact(int(r.header("Content-Length")))
            self.assertIn(code.encode(), body)
            self.assertTrue(c.at_eof(10))
        c = self.raw()
        c.send(patch_head(url, 0, 10, expect))
        self.assertEqual(c.read_response(no_body=True).status, 100)
        c.send(b"0123456789")
        r = c.read_response()
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, "10"))
        self.assertEqual(self.on_disk(url), b"0123456789")

    # -- volume of requests ------------------------------------------------
    def test_head_flood_while_a_patch_runs(self):
        data = os.urandom(32 * BUF)
        url = self.create(len(data) + 1).header("Location")  # stays incomplete
        s = socket.create_connection(("127.0.0.1", self.srv.port))
        self.addCleanup(s.close)
        s.sendall(patch_head(url, 0, len(data)))
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        self.addCleanup(conn.close)
        seen = []
        t0 = time.monotonic()
        for _ in range(2000):
            conn.request("HEAD", url, headers=TUS)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            seen.append(int(r.getheader("Upload-Offset")))
        rate = 2000 / (time.monotonic() - t0)
        sender.join(60)
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += s.recv(4096)
        self.assertIn(b" 204 ", resp.split(b"\r\n")[0])
        self.assertEqual(seen, sorted(seen), "HEAD's offset went back")
        self.assertLessEqual(seen[-1], len(data))
        self.assertEqual(self.head(url).header("Upload-Offset"), str(len(data)))
        sys.stderr.write("HEAD flood: %.0f HEAD/s during a 32 MiB PATCH\n" % rate)

    def test_a_thousand_one_byte_patches(self):
        n = 1000
        data = os.urandom(n)
        url = self.create(n + 1).header("Location")  # stays incomplete
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        self.addCleanup(conn.close)
        h = dict(TUS, **{"Content-Type": "application/offset+octet-stream"})
        t0 = time.monotonic()
        for i in range(n):
            h["Upload-Offset"] = str(i)
            conn.request("PATCH", url, body=data[i:i + 1], headers=h)
            r = conn.getresponse()
            r.read()
            self.assertEqual((r.status, r.getheader("Upload-Offset")), (204, str(i + 1)))
        rate = n / (time.monotonic() - t0)
        self.assertEqual(self.on_disk(url), data)
        self.restart()  # each was acknowledged durable
        self.assertEqual(self.head(url).header("Upload-Offset"), str(n))
        sys.stderr.write("one-byte PATCHes: %.0f PATCH/s (each fdatasync'ed and "
                         "committed before its 204)\n" % rate)

    # -- metadata, filenames, ids ------------------------------------------
    def test_metadata_with_thousands_of_keys(self):
        many = ",".join("k%d" % i for i in range(10000))
        c = self.raw()
        c.send(("POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Length: 10\r\nUpload-Metadata: %s\r\n\r\n" % many).encode())
        assert_error(self, c.read_response(), 431, "headers_too_large")
        fits = ",".join("k%d" % i for i in range(400))  # 1889 bytes
        url = self.create(10, fits).header("Location")
        self.assertEqual(self.head(url).header("Upload-Metadata"), fits)
        too_long = ",".join("k%d" % i for i in range(1000))
        assert_error(self, self.req("POST", "/v1/uploads", headers={
            "Upload-Length": "10", "Upload-Metadata": too_long}), 400, "invalid_metadata")
        assert_error(self, self.req("POST", "/v1/uploads", headers={
            "Upload-Length": "10", "Upload-Metadata": "k1,k2,k1"}), 400, "invalid_metadata")
        self.assertEqual(self.srv.get("/v1/healthz").status, 200)

    def test_filenames_are_names_never_paths(self):
        state = self.srv.state_dir
        before = sorted(os.listdir(os.path.dirname(state)))
        for i, name in enumerate(["../../escape.mrc", "a/b.mrc", "..",
                                  "two\nlines\r\n.mrc", "caf\u00e9.mrc"]):
            data = make_mrc(shape=(2, 3, 4), seed=80 + i)
            m = "filename " + base64.b64encode(name.encode()).decode()
            url = self.create(len(data), m).header("Location")
            self.assertEqual(self.head(url).header("Upload-Metadata"), m)
            r = self.patch(url, 0, data)
            self.assertEqual(r.status, 204, r)
            v = self.srv.get("/v1/volumes/%s" % r.header("CryoMamba-Volume-Id")).json
            self.assertEqual(v["filename"], name)
        # Every file is where its id puts it.
        self.assertEqual(sorted(os.listdir(os.path.dirname(state))), before)
        self.assertEqual(len(os.listdir(os.path.join(state, "volumes"))), 5)
        for f in os.listdir(os.path.join(state, "volumes")):
            self.assertRegex(f, r"^[0-9a-f-]{36}\.mrc$")
        for bad in (b"a\0b", b"\xff\xfe", b"\xc0\xaf"):
            r = self.req("POST", "/v1/uploads", headers={
                "Upload-Length": "10",
                "Upload-Metadata": "filename " + base64.b64encode(bad).decode()})
            assert_error(self, r, 400, "invalid_metadata")

    def test_ids_that_try_to_leave_the_route(self):
        url = self.create(10).header("Location")
        uid = url.rsplit("/", 1)[1]
        db = os.path.join(self.srv.state_dir, "jobs.db")
        for path in ("/v1/uploads/..", "/v1/uploads/../jobs", "/v1/uploads/..%2Fjobs.db",
                     "/v1/uploads/%2e%2e%2f%2e%2e%2fjobs.db", "/v1/uploads/.%2e",
                     "/v1/uploads/%s/../%s" % (uid, uid), "/v1/uploads/%s%%00" % uid,
                     "/v1/uploads/%s.part" % uid, "/v1/uploads/../uploads/" + uid,
                     "/v1/uploads/" + "a" * 5000):
            for method in ("HEAD", "DELETE"):
                r = self.req(method, path)
                self.assertIn(r.status, (400, 404, 405), (method, path, r))
            c = self.raw()
            c.send(patch_head(path, 0, 1) + b"x")
            self.assertIn(c.read_response().status, (400, 404, 405), path)
        self.assertTrue(os.path.exists(db))
        self.assertEqual(self.head(url).header("Upload-Offset"), "0")
        # An id in upper case names the same upload (ids are hex): the same
        # part twice in two cases is one part named twice.
        self.assertEqual(self.head("/v1/uploads/" + uid.upper()).status, 200)
        part = self.create(3, extra={"Upload-Concat": "partial"}).header("Location")
        self.assertEqual(self.patch(part, 0, b"abc").status, 204)
        r = self.req("POST", "/v1/uploads", headers={
            "Upload-Concat": "final;%s %s" % (part, part.upper().replace("/V1/UPLOADS", "/v1/uploads"))})
        assert_error(self, r, 400, "part_duplicate")


if __name__ == "__main__":
    main()
