#!/usr/bin/python3
"""tus concatenation (docs/protocol.md, "Uploads", concatenation) against
the real server with raw HTTP: a volume from partial uploads, HEAD of a
final before and after its join, creation errors, parts held while a
final is assembled, termination while assembling, dedup, failed finals,
tokens. Crashes and restarts during a join: test_uploads_crash.py."""

import base64
import hashlib
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import assert_error, main  # noqa: E402
from tus_util import TusCase, make_mrc, meta  # noqa: E402


class ConcatTest(TusCase):
    """tus concatenation: partial uploads, a final made of them."""

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
            self.wait_gone(u)
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
        finals = []
        try:
            f1 = self.final(urls)
            self.assertEqual(f1.status, 201, f1)
            f1 = f1.header("Location")
            finals.append(f1)
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
            finals.append(f2)
        finally:
            # Each final's join opens the pipe on its own: let every one go.
            self.release_fifo(fifo, until=lambda: all(
                self.head(f).status != 200 for f in finals))
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
            self.wait_gone(u)
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


if __name__ == "__main__":
    main()
