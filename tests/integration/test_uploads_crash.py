#!/usr/bin/python3
"""Uploads across crashes (docs/protocol.md, "Uploads", durability):
kill -9 in the middle of a PATCH, of a validation and of a join,
SIGTERM during a join, records and files edited to stand for every
crash window of a completion, the start-up's removal of orphans, and
answers that tell only what is committed (the store's lock held)."""

import hashlib
import json
import os
import shutil
import signal
import socket
import re
import sqlite3
import subprocess
import sys
import tempfile
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import RawHTTP, Server, assert_error, main  # noqa: E402
from tus_util import TusCase, make_mrc, meta  # noqa: E402


class UploadCrashTest(TusCase):
    """Plain uploads: a PATCH or a validation cut short, restored records."""

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
        # The file goes after the answer (its unlink is queued with it).
        self.poll(lambda: self.uploads_dir() == [], "the upload's file to go")

    def test_restored_completing_upload_completes(self):
        data = make_mrc(shape=(4, 8, 8), seed=5)
        url, uid = self._all_but_last_byte_then_stop(data)
        self.edit_record(uid, offset=len(data), state="completing")
        self.srv = Server(self.args, state_dir=self.srv.state_dir).start()
        self.finish_after_restart(url, data)

    def terminating(self, url):
        """Polls the log until the removal of `url` is being committed."""
        uid = url.rsplit("/", 1)[1]
        self.poll(lambda: any('"upload.terminating"' in l and uid in l
                              for l in self.srv.stderr_tail(1 << 20).splitlines()),
                  "the termination to be queued")

    def test_a_volume_deletion_is_told_once_durable_and_frees_the_file(self):
        data = make_mrc(shape=(8, 16, 24), seed=31)
        url = self.create(len(data)).header("Location")
        r = self.patch(url, 0, data)
        self.assertEqual(r.status, 204)
        vid = r.header("CryoMamba-Volume-Id")
        path = os.path.join(self.srv.state_dir, "volumes", vid + ".mrc")
        self.assertTrue(os.path.exists(path))
        with self.store_locked():
            d = RawHTTP(self.srv.port)
            self.addCleanup(d.close)
            d.send(("DELETE /v1/volumes/%s HTTP/1.1\r\nHost: x\r\n\r\n" % vid).encode())
            # The commit gives up (busy timeout): 503, and the volume and its
            # file are as they were, for every client meanwhile too.
            assert_error(self, d.read_response(), 503, "store_unavailable")
            self.assertEqual(self.srv.get("/v1/volumes/%s" % vid).status, 200)
            self.assertTrue(os.path.exists(path))
        r = self.srv.request("DELETE", "/v1/volumes/%s" % vid)
        self.assertEqual(r.status, 200)
        # A 200 means the bytes are freed: the file is gone already.
        self.assertFalse(os.path.exists(path))
        self.assertEqual(self.srv.get("/v1/volumes/%s" % vid).status, 404)
        self.restart()
        self.assertEqual(self.srv.get("/v1/volumes/%s" % vid).status, 404)

    def test_termination_is_told_once_durable_and_a_failed_one_changes_nothing(self):
        url = self.create(100).header("Location")
        self.assertEqual(self.patch(url, 0, b"a" * 10).status, 204)
        with self.store_locked():
            d = RawHTTP(self.srv.port)
            self.addCleanup(d.close)
            d.send(("DELETE %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"
                    % url).encode())
            self.terminating(url)
            # Not committed: the upload is as it was for everyone.
            h = self.head(url)
            self.assertEqual((h.status, h.header("Upload-Offset")), (200, "10"))
            # The commit gives up (busy timeout): 503, and nothing changed.
            assert_error(self, d.read_response(), 503, "store_unavailable")
            self.assertEqual(self.head(url).header("Upload-Offset"), "10")
        r = self.patch(url, 10, b"b" * 5)
        self.assertEqual((r.status, r.header("Upload-Offset")), (204, "15"))
        self.restart()
        self.assertEqual(self.head(url).header("Upload-Offset"), "15")
        # A PATCH and a second DELETE sent while a removal commits are
        # answered by its outcome.
        with self.store_locked():
            d = RawHTTP(self.srv.port)
            self.addCleanup(d.close)
            d.send(("DELETE %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"
                    % url).encode())
            self.terminating(url)
            d2 = RawHTTP(self.srv.port)
            self.addCleanup(d2.close)
            d2.send(("DELETE %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"
                     % url).encode())
            p = RawHTTP(self.srv.port)
            self.addCleanup(p.close)
            p.send(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                    "Content-Type: application/offset+octet-stream\r\n"
                    "Upload-Offset: 15\r\nContent-Length: 3\r\n\r\nccc" % url).encode())
            self.assertEqual(self.head(url).status, 200)
        self.assertEqual(d.read_response().status, 204)
        self.assertEqual(d2.read_response().status, 204)
        assert_error(self, p.read_response(), 404, "upload_not_found")
        self.assertEqual(self.head(url).status, 404)
        self.poll(lambda: self.uploads_dir() == [], "the file to go")
        self.restart()
        self.assertEqual(self.head(url).status, 404)

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


class ConcatCrashTest(TusCase):
    """Finals: a join cut short, a completion cut after one of its records."""

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
            self.wait_gone(u)
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
            self.wait_gone(u)
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


class DurableStateTest(TusCase):
    """Answers tell only what is committed. The test holds the store's write
    lock (SQLite, from this process), so the server's commits wait."""

    def test_offset_is_not_told_before_its_record_commits(self):
        url = self.create(100).header("Location")
        part = os.path.join(self.srv.state_dir, "uploads",
                            url.rsplit("/", 1)[1] + ".part")
        with self.store_locked():
            raw = RawHTTP(self.srv.port)
            self.addCleanup(raw.close)
            raw.send(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                          "Content-Type: application/offset+octet-stream\r\n"
                          "Upload-Offset: 0\r\nContent-Length: 10\r\n\r\n"
                          % url).encode() + b"a" * 10)
            self.poll(lambda: os.path.exists(part) and os.path.getsize(part) == 10,
                      "the bytes to land")
            self.assertEqual(self.head(url).header("Upload-Offset"), "0")
            # The commit gives up (busy timeout): 503, and the offset stays.
            assert_error(self, raw.read_response(), 503, "store_unavailable")
            self.assertEqual(self.head(url).header("Upload-Offset"), "0")
        # HEAD told where to resume, and the resume works.
        r = self.patch(url, 0, b"b" * 10)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Upload-Offset"), "10")
        self.restart()
        self.assertEqual(self.head(url).header("Upload-Offset"), "10")

    def test_failed_final_is_not_told_before_its_record_commits(self):
        data = make_mrc(shape=(2, 3, 4), seed=53)
        urls = self.parts(data, [300])
        fifo = self.fifo_part(urls[1])
        f = self.final(urls)
        self.assertEqual(f.status, 201, f)
        f = f.header("Location")
        with self.store_locked():
            self.release_fifo(fifo)  # the join finds the part short
            self.wait_log("upload.final_failed")
            h = self.head(f)
            self.assertEqual(h.status, 200, h)
            self.assertIsNone(h.header("CryoMamba-Upload-Error"), h)
            self.assertIsNone(h.header("Upload-Offset"), h)
            self.assertEqual(self.record(f.rsplit("/", 1)[1])["state"], "completing")
        h = self.poll(lambda: (lambda r: r if r.status != 200 else None)(
            self.head(f)), "the failure to be told")
        self.assertEqual(h.status, 500, h)
        self.assertIn("shorter than its length", h.header("CryoMamba-Upload-Error"))
        self.assertEqual(self.record(f.rsplit("/", 1)[1])["state"], "failed")


class DirectorySyncTest(TusCase):
    """A new name in the state directory (an upload's file, a volume, an
    artifact, the directories themselves) is durable only once its
    directory is synced, which must happen before any record names it. A
    power cut cannot be staged here, so the server runs under strace and
    the test checks each thread's system calls, in order, before the answer
    that depends on them."""

    def setUp(self):
        if shutil.which("strace") is None or subprocess.run(
                ["strace", "-qq", "-o", "/dev/null", "true"]).returncode != 0:
            self.skipTest("strace is missing or cannot trace here")
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-strace-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        wrapper = os.path.join(self.tmp, "traced")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec strace -ff -qq -s 4096 -e trace=openat,fsync,"
                    "link,linkat,rename,renameat,renameat2,mkdir,mkdirat "
                    "-o %s/t %s \"$@\"\n" % (self.tmp, harness.SERVER_BIN))
        os.chmod(wrapper, 0o755)
        with mock.patch.object(harness, "SERVER_BIN", wrapper):
            self.srv = Server().start()

    def tearDown(self):
        # The process the harness started is strace: killing it leaves the
        # traced server running, so the server (strace's child) goes first.
        pid = self.srv.proc.pid
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        super().tearDown()

    def threads(self):
        """Each traced thread's calls: (call, paths, result) tuples."""
        out = []
        for name in os.listdir(self.tmp):
            if not name.startswith("t."):
                continue
            calls = []
            with open(os.path.join(self.tmp, name), errors="replace") as f:
                for line in f:
                    m = re.match(r"(\w+)\((.*)\)\s+= (-?\d+)", line)
                    if m:
                        calls.append((m.group(1), re.findall(r'"([^"]*)"', m.group(2)),
                                      m.group(2), int(m.group(3))))
            out.append(calls)
        return out

    def synced_after(self, made, directory):
        """Whether some thread made a name (`made`: a predicate on a call)
        and then fsync'ed `directory`, opened after it."""
        for calls in self.threads():
            fds = {}
            seen = False
            for call, paths, args, rc in calls:
                if not seen:
                    seen = made(call, paths, args, rc)
                elif call == "openat" and paths == [directory] and rc >= 0:
                    fds[rc] = True
                elif call == "fsync" and rc == 0 and fds.get(int(args)):
                    return True
        return False

    def test_new_names_are_synced_before_their_records(self):
        state = self.srv.state_dir
        # Start-up made the directories and synced the one holding them.
        for d in ("artifacts", "uploads", "volumes"):
            self.assertTrue(self.synced_after(
                lambda c, p, a, rc: c in ("mkdir", "mkdirat") and p == [state + "/" + d]
                and rc == 0, state), d)
        data = make_mrc(shape=(4, 8, 8), seed=54)
        url = self.create(len(data)).header("Location")
        part = "%s/uploads/%s.part" % (state, url.rsplit("/", 1)[1])
        self.assertEqual(self.patch(url, 0, data[:100]).status, 204)
        self.assertTrue(self.synced_after(
            lambda c, p, a, rc: c == "openat" and p == [part] and "O_CREAT" in a
            and rc >= 0, state + "/uploads"))
        r = self.patch(url, 100, data[100:])
        self.assertEqual(r.status, 204, r)
        vol = "%s/volumes/%s.mrc" % (state, r.header("CryoMamba-Volume-Id"))
        self.assertTrue(self.synced_after(
            lambda c, p, a, rc: c in ("link", "linkat") and p == [part, vol]
            and rc == 0, state + "/volumes"))
        job = self.srv.create_job({"volume": {"shape": [4, 4, 4]}}, duration_s=0.2)
        self.srv.wait_state(job["job_id"], ["completed"])
        mask = "%s/artifacts/%s-mask.mrc" % (state, job["job_id"])
        self.assertTrue(self.synced_after(
            lambda c, p, a, rc: c.startswith("rename") and p == [mask + ".tmp", mask]
            and rc == 0, state + "/artifacts"))


if __name__ == "__main__":
    main()
