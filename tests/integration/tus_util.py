"""tus_util.py: what the upload tests share (test_uploads*.py): MRC files
written with mrcfile (Debian python3-mrcfile), tus requests over http.client,
and TusCase, a server per test with the requests and checks the tests use
(restarts, record edits, concatenation's parts and finals, a named pipe that
holds a reader). Next to harness.py, which starts the server."""

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import select
import signal
import sqlite3
import time
import unittest

import mrcfile
import numpy as np

from harness import Resp, Server

TUS = {"Tus-Resumable": "1.0.0"}
UNKNOWN_ID = "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"


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
    """An Upload-Metadata value: each value base64, pairs joined by ','."""
    return ",".join("%s %s" % (k, base64.b64encode(v.encode()).decode())
                    for k, v in kv.items())


class TusCase(unittest.TestCase):
    """A server per test and the tus requests the tests send."""
    args = ()

    def setUp(self):
        self.srv = Server(self.args).start()

    def tearDown(self):
        self.srv.cleanup()

    # -- requests -------------------------------------------------------
    def req(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        h = dict(TUS)
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            payload = r.read()
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

    # -- restarts and records ---------------------------------------------
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
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"))
        with db:
            (text,) = db.execute("SELECT record FROM uploads WHERE id = ?",
                                 (upload_id,)).fetchone()
            rec = json.loads(text)
            rec.update(fields)
            db.execute("UPDATE uploads SET record = ? WHERE id = ?",
                       (json.dumps(rec), upload_id))
        db.close()

    def record(self, upload_id):
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"))
        try:
            row = db.execute("SELECT record FROM uploads WHERE id = ?",
                             (upload_id,)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else None

    @contextlib.contextmanager
    def store_locked(self):
        """Holds the store's write lock from this process: the server's
        commits wait (its busy timeout is 5 s, then they fail) until the
        block ends."""
        db = sqlite3.connect(os.path.join(self.srv.state_dir, "jobs.db"),
                             isolation_level=None, timeout=10)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()

    def wait_log(self, event):
        """Polls the server's log for a line with `event`."""
        self.poll(lambda: '"%s"' % event in self.srv.stderr_tail(1 << 20),
                  "the log line " + event)

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

    def wait_gone(self, url):
        """Polls HEAD until `url` is 404: a removal the server makes by
        itself (a final's parts, once it completes) is told once it
        commits, not when it is decided."""
        self.poll(lambda: self.head(url).status == 404, "%s to be removed" % url)

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

    def step_waiting(self, fifo):
        """Waits until a validation step holds on named pipe `fifo` (in the
        server's CRYOMAMBA_TEST_CHECK_FIFOS directory) and returns the
        pipe's write end: the step stays blocked until step_go()."""
        def opened():
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no step waits on it yet
                return None
        return self.poll(opened, "a validation step to wait on the pipe")

    def step_go(self, fd):
        """Lets the step holding on step_waiting()'s pipe run."""
        os.write(fd, b"x")
        os.close(fd)

    def no_step_waiting(self, fifo):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return True
        return False

    # -- concatenation --------------------------------------------------
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
        # HEAD tells only what is committed: the record names the volume.
        rec = self.record(url.rsplit("/", 1)[1])
        self.assertEqual((rec["state"], rec["volume_id"]),
                         ("completed", h.header("CryoMamba-Volume-Id")))
        self.assertEqual(h.header("Upload-Offset"), str(len(data)))
        self.assertEqual(h.header("Upload-Length"), str(len(data)))
        v = self.srv.get("/v1/volumes/%s" % h.header("CryoMamba-Volume-Id")).json
        self.assertEqual(v["sha256"], hashlib.sha256(data).hexdigest())
        return v

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

    def release_fifo(self, path, until=None):
        """Lets the joins reading the pipe go (they see it end early). With
        `until`, keeps letting joins go until until() is true: a join that
        opens the pipe after a release would otherwise wait forever."""
        def opened():
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no join is waiting on it yet
                return None
        if until is None:
            os.close(self.poll(opened, "the join to open the part"))
            return

        def released():
            fd = opened()
            if fd is not None:
                os.close(fd)
            return until()
        self.poll(released, "the joins waiting on the pipe to end")
