#!/usr/bin/python3
"""cryomamba-viewer (docs/viewer.md) end to end, under a private Xvfb,
against the real cryomambad: the viewer opens a phantom tomogram, uploads it
and submits a job on the volume, shows the streamed previews and writes a
screenshot of its three views (one pixel per voxel) plus the shown mask as
.mrc; the test checks, pixel by pixel, that the volume is there in grey and
the overlay is in the label colour exactly where the mask says, that the
mask is the preview upsampled with the server's alignment, that the final
mask replaces the previews, and that the viewer rides out a server killed
and restarted under it. Uploads: the job names the volume whose sha256 is
the file's, a second submit reuses it, a cancel leaves nothing on the
server, a quit mid-upload resumes at the next submit, shape-only submission
(--no-upload, or a server answering 404 to uploads), and the engine sent.
Uploads that must stop half-way go through a TCP proxy (Proxy) that holds
the viewer's bytes past a byte count: deterministic, no sleeps.

Binaries: $CRYOMAMBA_VIEWER_BIN, $CRYOMAMBA_CLI_BIN, $CRYOMAMBA_SERVER_BIN
(harness.py). Skips when the viewer was not built (no GTK 4), Xvfb is
missing, or PIL is not installed."""

import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cli_util import BUILD, CLI_BIN, TcpProxy, free_port, sha256_of, wait_item  # noqa: E402
from harness import Server, main  # noqa: E402

VIEWER_BIN = os.path.abspath(os.environ.get(
    "CRYOMAMBA_VIEWER_BIN", os.path.join(BUILD, "src", "viewer", "cryomamba-viewer")))
XVFB = shutil.which("Xvfb")
LINE_TIMEOUT = 90.0  # one expected line of the viewer; the machine is shared
GAP = 4  # pixels between the views in a screenshot (viewer_shot.c)
LABEL_RGB = {1: (0xff, 0x40, 0x00), 2: (0x00, 0xa0, 0xff)}  # viewer_render.c

try:
    import mrcfile
    import numpy as np
    from PIL import Image
    HAVE_LIBS = True
except ImportError:  # pragma: no cover
    HAVE_LIBS = False


def skip_reason():
    if not os.path.isfile(VIEWER_BIN):
        return "cryomamba-viewer not built (no GTK 4): %s" % VIEWER_BIN
    if XVFB is None:
        return "Xvfb is not installed"
    if not HAVE_LIBS:
        return "python3-pil / mrcfile / numpy missing"
    return None


class Xvfb:
    """A private X server; -displayfd picks a free display atomically, so
    parallel tests never race for one."""

    def __init__(self):
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [XVFB, "-displayfd", str(w), "-screen", "0", "1280x1024x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(w)
        data = b""
        deadline = time.monotonic() + 30
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                self.stop()
                raise AssertionError("Xvfb did not report its display in 30 s")
            chunk = os.read(r, 64)
            if not chunk:
                self.stop()
                raise AssertionError("Xvfb exited: %r" % self.proc.wait(5))
            data += chunk
        os.close(r)
        self.display = ":" + data.decode().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Viewer:
    """cryomamba-viewer in the background; its "viewer: ..." stdout lines
    are collected as they come."""

    def __init__(self, display, tmp, args):
        env = dict(os.environ)
        env.update({
            "DISPLAY": display,
            "GDK_BACKEND": "x11",
            "GSK_RENDERER": "cairo",  # no GL on Xvfb
            "XDG_CONFIG_HOME": os.path.join(tmp, "config"),
            "XDG_CACHE_HOME": os.path.join(tmp, "cache"),
            "XDG_STATE_HOME": os.path.join(tmp, "state"),  # resume records
            "TMPDIR": tmp,
            "NO_AT_BRIDGE": "1",
            "GTK_A11Y": "none",
        })
        env.pop("CRYOMAMBA_TOKEN", None)
        # Under the sanitizer suite: GTK, fontconfig and pango keep caches
        # until exit by design; the viewer's own code is checked by its unit
        # tests, so leak reports here would only be theirs.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        self.err_path = os.path.join(tmp, "viewer-stderr.log")
        errf = open(self.err_path, "wb")
        self.proc = subprocess.Popen([VIEWER_BIN] + list(args), stdout=subprocess.PIPE,
                                     stderr=errf, stdin=subprocess.DEVNULL, env=env)
        errf.close()
        self.lines = []
        self.q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self.q.put(line)
        self.proc.stdout.close()
        self.q.put(None)

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_line(self, pattern, timeout=LINE_TIMEOUT):
        """Returns the match of the first new line matching `pattern`."""
        rx = re.compile(pattern)
        line = wait_item(
            self.q, rx.search, timeout,
            lambda: "no line matching %r within %.0f s; lines %r stderr %r"
            % (pattern, timeout, self.lines[-15:], self.stderr()),
            lambda: "viewer exited (%r) before a line matching %r; lines %r stderr %r"
            % (self.proc.wait(10), pattern, self.lines[-15:], self.stderr()))
        return rx.search(line)

    def wait(self, timeout=LINE_TIMEOUT):
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Proxy(TcpProxy):
    """Forwards TCP connections to 127.0.0.1:upstream. What the viewer sends
    passes until `total_cap` bytes over all connections; from the
    `hold_patch`-th PATCH on (1 = the first), a PATCH's headers pass but not
    its body. Past a cap the connection is held (not read any more) until
    release(). Answers come back unhindered. `refuse`: a request whose
    target starts with it is answered 404 route_not_found here (a server
    without uploads); `drop`: one whose target starts with it is closed
    unanswered (a network failure, retried). The first bytes of each
    connection are kept in `heads`."""

    def __init__(self, upstream, total_cap=None, hold_patch=None, refuse=None, drop=None):
        self.drop = drop
        self.hold_patch = hold_patch
        self.patches = 0
        self.total_cap = total_cap
        self.refuse = refuse
        self.forwarded = 0
        self.heads = []
        self.stopping = False
        self.cond = threading.Condition()
        super().__init__(upstream)

    def release(self):
        with self.cond:
            self.hold_patch = self.total_cap = None
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        super().close()

    def _serve(self, c):
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = c.recv(65536)
            if not data:
                break
            head += data
        cap = None  # this connection's: its headers only
        with self.cond:
            self.heads.append(head)
            if head.startswith(b"PATCH "):
                self.patches += 1
                if self.hold_patch is not None and self.patches >= self.hold_patch:
                    cap = head.index(b"\r\n\r\n") + 4
        target = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else ""
        if self.drop is not None and target.startswith(self.drop):
            c.close()
            return
        if self.refuse is not None and target.startswith(self.refuse):
            body = json.dumps({"error": {"code": "route_not_found", "message": "no such route",
                                         "hint": None, "retryable": False}}).encode()
            c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            c.close()
            return
        u = self.connect_upstream()
        if u is None:
            c.close()
            return
        threading.Thread(target=self._back, args=(u, c), daemon=True).start()
        sent = 0
        try:
            data = head
            while data:
                while data:
                    n = self._allowance(sent, len(data), cap)
                    if n == 0:
                        raise OSError("the proxy closes")
                    u.sendall(data[:n])
                    sent += n
                    data = data[n:]
                data = c.recv(65536)
            u.shutdown(socket.SHUT_WR)  # _back closes both once answered
        except OSError:
            for s in (c, u):
                try:
                    s.close()
                except OSError:
                    pass

    def _allowance(self, sent, want, cap):
        """Bytes that may go now (waits while held); 0 once stopping."""
        with self.cond:
            while not self.stopping:
                n = want
                if cap is not None and self.hold_patch is not None:
                    n = min(n, cap - sent)
                if self.total_cap is not None:
                    n = min(n, self.total_cap - self.forwarded)
                if n > 0:
                    self.forwarded += n
                    return n
                self.cond.wait(1.0)
            return 0

    def _back(self, u, c):
        try:
            while True:
                data = u.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass


def make_phantom(path, shape):
    r = subprocess.run([CLI_BIN, "phantom", "--shape", ",".join(map(str, shape)),
                        "-o", path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("phantom failed: %r" % r.stderr)


def read_mrc(path):
    with mrcfile.open(path, permissive=False) as m:
        return np.array(m.data)


SHOT_RE = (r"^viewer: screenshot (\S+) \((.*); cursor z=(\d+) y=(\d+) x=(\d+); "
           r"mask (\w+); opacity ([0-9.]+)\)$")


class ViewerCase(unittest.TestCase):
    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-viewer-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.x = Xvfb()
        self.addCleanup(self.x.stop)

    def viewer(self, *args):
        v = Viewer(self.x.display, self.tmp, args)
        self.addCleanup(v.kill)
        return v

    def path(self, name):
        return os.path.join(self.tmp, name)

    # -- checks ---------------------------------------------------------
    def check_screenshot(self, png, vol, mask, cursor, opacity):
        """The PNG shows `vol` in grey and `mask` in label colours, in the
        orthogonal layout at one pixel per voxel."""
        img = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
        nz, ny, nx = vol.shape
        self.assertEqual(img.shape, (ny + GAP + nz, nx + GAP + nz, 3))
        z, y, x = cursor
        views = {
            "XY": (img[0:ny, 0:nx], vol[z], mask[z]),
            "YZ": (img[0:ny, nx + GAP:nx + GAP + nz], vol[:, :, x].T, mask[:, :, x].T),
            "XZ": (img[ny + GAP:ny + GAP + nz, 0:nx], vol[:, y, :], mask[:, y, :]),
        }
        a = int(opacity * 256 + 0.5)
        blend = {}
        for label, rgb in LABEL_RGB.items():
            g = np.arange(256)
            blend[label] = set(zip(*[((g * (256 - a) + c * a + 128) >> 8).tolist()
                                     for c in rgb]))
        overlay_pixels = 0
        for name, (pix, vals, labels) in views.items():
            self.assertEqual(pix.shape[:2], vals.shape, name)
            bg = labels == 0
            grey = pix[bg]
            self.assertTrue((grey[:, 0] == grey[:, 1]).all() and
                            (grey[:, 1] == grey[:, 2]).all(),
                            "%s: unlabelled pixels are not grey" % name)
            # The grey is the volume under a window/level: monotone, so it
            # correlates almost perfectly with the voxel values.
            corr = np.corrcoef(grey[:, 0].astype(float), vals[bg].astype(float))[0, 1]
            self.assertGreater(corr, 0.95, "%s: grey does not follow the volume" % name)
            for label in np.unique(labels):
                if label == 0:
                    continue
                self.assertIn(int(label), LABEL_RGB, "unexpected label %d" % label)
                sel = pix[labels == label]
                bad = [tuple(p) for p in sel.tolist() if tuple(p) not in blend[int(label)]]
                self.assertEqual(bad[:5], [], "%s: label %d pixels not in its colour "
                                 "(opacity %.3f)" % (name, label, opacity))
                overlay_pixels += len(sel)
        return overlay_pixels

    def check_upsampled(self, mask, final, scale):
        """`mask` is a preview upsampled by `scale` with the server's
        alignment: constant on the s-blocks anchored at 0 (clipped at the
        border), each block holding the final mask's label at the block's
        first voxel wherever it is labelled (blobs only ever grow)."""
        s = scale
        origin = mask[::s, ::s, ::s]
        up = origin.repeat(s, 0).repeat(s, 1).repeat(s, 2)[:mask.shape[0], :mask.shape[1],
                                                          :mask.shape[2]]
        self.assertTrue((up == mask).all(), "mask is not block-constant on %d-blocks" % s)
        fo = final[::s, ::s, ::s]
        nz = origin != 0
        self.assertGreater(int(nz.sum()), 0, "the preview mask is empty")
        self.assertTrue((origin[nz] == fo[nz]).all(),
                        "preview labels disagree with the final mask at block origins")

    def download_final(self, server, job_id):
        server.wait_state(job_id, "completed", timeout=120)
        r = server.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id, timeout=60)
        self.assertEqual(r.status, 200)
        p = self.path("final.mrc")
        with open(p, "wb") as f:
            f.write(r.body)
        return read_mrc(p)


class ViewerPreviewTest(ViewerCase):
    def test_previews_shown_aligned_in_label_colours(self):
        shape, scale = (40, 60, 70), 3  # not multiples of the scale: borders clip
        ph = self.path("phantom.mrc")
        make_phantom(ph, shape)
        srv = Server().start()
        self.addCleanup(srv.cleanup)
        png, exported = self.path("shot.png"), self.path("shown.mrc")
        # Full previews (base64, as an old server sends): upsampled.
        v = self.viewer("--server", srv.base, "--open", ph, "--submit", "--engine", "sim",
                        "--encoding", "base64",
                        "--pattern", "blobs", "--hz", "4", "--duration", "3",
                        "--scale", str(scale), "--opacity", "0.6",
                        "--screenshot", png, "--export-mask", exported,
                        "--after-previews", "3")
        v.wait_line(r"^viewer: opened .*shape 40,60,70 mode 2")
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(1), png)
        self.assertEqual(m.group(6), "preview")
        shown = [l for l in v.lines if re.match(r"^viewer: preview \d+ shown", l)]
        self.assertGreaterEqual(len(shown), 3, v.lines)
        vol = read_mrc(ph)
        mask = read_mrc(exported)
        self.assertEqual(mask.shape, shape)
        cursor = tuple(int(m.group(i)) for i in (3, 4, 5))
        self.assertEqual(cursor, tuple(d // 2 for d in shape))
        final = self.download_final(srv, job_id)
        self.check_upsampled(mask, final, scale)
        n = self.check_screenshot(png, vol, mask, cursor, float(m.group(7)))
        self.assertGreater(n, 0, "no overlay pixel in the screenshot")
        srv.assert_healthy()

    def test_final_mask_replaces_previews(self):
        shape = (36, 48, 52)
        ph = self.path("phantom.mrc")
        make_phantom(ph, shape)
        srv = Server().start()
        self.addCleanup(srv.cleanup)
        png, exported = self.path("shot.png"), self.path("shown.mrc")
        # The server comes from the preferences file this time.
        os.makedirs(self.path("config/cryomamba"))
        with open(self.path("config/cryomamba/viewer.ini"), "w") as f:
            f.write("[server]\nurl=%s\ntoken=\n\n[job]\npattern=blobs\n" % srv.base)
        v = self.viewer("--open", ph, "--submit", "--engine", "sim", "--hz", "5", "--duration", "2",
                        "--scale", "2", "--screenshot", png, "--export-mask", exported)
        v.wait_line(r"^viewer: server %s \(preferences\)$" % re.escape(srv.base))
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(r"^viewer: final mask shown")
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(6), "final")
        final = self.download_final(srv, job_id)
        mask = read_mrc(exported)
        self.assertTrue((mask == final).all(), "the shown mask is not the final mask")
        cursor = tuple(int(m.group(i)) for i in (3, 4, 5))
        n = self.check_screenshot(png, read_mrc(ph), mask, cursor, float(m.group(7)))
        self.assertGreater(n, 0)


    def test_cancel_keeps_the_last_preview(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (32, 96, 128))
        srv = Server().start()
        self.addCleanup(srv.cleanup)
        png, exported = self.path("shot.png"), self.path("shown.mrc")
        v = self.viewer("--server", srv.base, "--open", ph, "--submit", "--engine", "sim",
                        "--encoding", "raw",
                        "--pattern", "blobs", "--hz", "5", "--duration", "60",
                        "--scale", "2", "--cancel-after-previews", "2",
                        "--screenshot", png, "--export-mask", exported)
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(r"^viewer: cancelling job %s$" % job_id)
        v.wait_line(r"^viewer: job %s cancelled$" % job_id)
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(2), "job cancelled")
        self.assertEqual(m.group(6), "preview")
        self.assertEqual(srv.job(job_id)["state"], "cancelled")
        mask = read_mrc(exported)
        cursor = tuple(int(m.group(i)) for i in (3, 4, 5))
        self.check_screenshot(png, read_mrc(ph), mask, cursor, float(m.group(7)))


class ViewerChunksTest(ViewerCase):
    """The default on a server that lists encodings:...,chunks: the coarse
    level for the whole volume, the full-resolution chunks of the three
    shown planes (sent as a view, coalesced while the slice is dragged),
    only those redrawn."""

    VIEW_RE = (r"^viewer: view z=(\d+) y=(\d+) x=(\d+) zoom=(\S+) sent "
               r"\(t=([0-9.]+) s\)$")

    def test_full_resolution_at_the_shown_slices_and_the_view_follows_them(self):
        shape, scale = (40, 60, 70), 4
        ph = self.path("phantom.mrc")
        make_phantom(ph, shape)
        srv = Server().start()
        self.addCleanup(srv.cleanup)
        png, exported = self.path("shot.png"), self.path("shown.mrc")
        v = self.viewer("--server", srv.base, "--open", ph, "--submit", "--engine", "sim",
                        "--pattern", "blobs", "--hz", "4", "--duration", "4",
                        "--scale", str(scale), "--opacity", "0.6",
                        "--no-final-mask", "--drag-slice-after", "2",
                        "--screenshot", png, "--export-mask", exported)
        v.wait_line(r"^viewer: encodings: \S*chunks\S* \(chunks\)$")
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(r"^viewer: subscribing to job %s \(encoding chunks, scale 4\)$" % job_id)
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(2), "job completed")
        self.assertEqual(m.group(6), "chunks")
        cursor = tuple(int(m.group(i)) for i in (3, 4, 5))
        self.assertEqual(cursor, (shape[0] - 1, shape[1] // 2, shape[2] // 2),
                         "the drag moved the XY slice to the last")
        # Chunks came: a keyframe, coarse ones and full-resolution ones of
        # the view's planes.
        deltas = [re.match(r"^viewer: delta seq \d+: (\d+) chunks \((\d+) at scale 4, "
                           r"(\d+) at plane scale (\d+)\)(, keyframe)?", l) for l in v.lines]
        deltas = [d for d in deltas if d]
        self.assertTrue(deltas and deltas[0].group(5), v.lines)
        self.assertGreater(sum(int(d.group(2)) for d in deltas), 0)
        self.assertGreater(sum(int(d.group(3)) for d in deltas if d.group(4) == "1"), 0)
        # Views: the first with the centre, at once; during the drag at most
        # one per 50 ms, fewer than the 20 steps, the last the final slice.
        views = [re.match(self.VIEW_RE, l) for l in v.lines]
        views = [x for x in views if x]
        self.assertEqual(tuple(int(views[0].group(i)) for i in (1, 2, 3)),
                         tuple(d // 2 for d in shape))
        self.assertEqual(views[0].group(4), "1")
        drag = v.lines.index(next(l for l in v.lines if l.startswith("viewer: slice drag from")))
        during = [x for x in (re.match(self.VIEW_RE, l) for l in v.lines[drag:]) if x]
        self.assertGreaterEqual(len(during), 1)
        self.assertLess(len(during), 20, "views are coalesced")
        times = [float(x.group(5)) for x in views]
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertTrue(all(g >= 0.049 for g in gaps), gaps)
        self.assertEqual(tuple(int(during[-1].group(i)) for i in (1, 2, 3)), cursor)
        # At completion the overlay at the three shown slices is the
        # artifact's, which the coarse level upsampled is not.
        final = self.download_final(srv, job_id)
        z, y, x = cursor
        n = self.check_screenshot(png, read_mrc(ph), final, cursor, float(m.group(7)))
        self.assertGreater(n, 0, "no overlay pixel in the screenshot")
        s = scale
        coarse = np.zeros(tuple(-(-d // s) for d in shape), np.uint8)
        for dz in range(s):
            for dy in range(s):
                for dx in range(s):
                    part = final[dz::s, dy::s, dx::s].astype(np.uint8)
                    sub = coarse[:part.shape[0], :part.shape[1], :part.shape[2]]
                    np.maximum(sub, part, out=sub)
        up = coarse.repeat(s, 0).repeat(s, 1).repeat(s, 2)[:shape[0], :shape[1], :shape[2]]
        self.assertFalse((up[z] == final[z]).all() and (up[:, y] == final[:, y]).all() and
                         (up[:, :, x] == final[:, :, x]).all(),
                         "the coarse level alone would pass: the test proves nothing")
        shown = read_mrc(exported)
        self.assertTrue((shown[z] == final[z]).all())
        self.assertTrue((shown[:, y] == final[:, y]).all())
        self.assertTrue((shown[:, :, x] == final[:, :, x]).all())
        srv.assert_healthy()


class ViewerOpenTest(ViewerCase):
    def test_every_mode_opens(self):
        vol = (np.arange(6 * 7 * 8).reshape(6, 7, 8) % 50).astype(np.float32)
        for mode, dtype in ((0, np.int8), (1, np.int16), (2, np.float32),
                            (6, np.uint16), (12, np.float16)):
            p = self.path("m%d.mrc" % mode)
            with mrcfile.new(p, overwrite=True) as m:
                m.set_data(vol.astype(dtype))
            png = self.path("m%d.png" % mode)
            v = self.viewer("--open", p, "--screenshot", png,
                            "--server", "http://127.0.0.1:9")
            v.wait_line(r"^viewer: opened .*mode %d " % mode)
            m = v.wait_line(SHOT_RE)
            self.assertEqual(v.wait(), 0, v.stderr())
            self.check_screenshot(png, vol, np.zeros(vol.shape, np.uint8),
                                  tuple(int(m.group(i)) for i in (3, 4, 5)), 0.5)

    def test_corrupt_file_is_reported(self):
        p = self.path("bad.mrc")
        with open(p, "wb") as f:
            f.write(b"\0" * 2000)
        trunc = self.path("truncated.mrc")
        make_phantom(trunc, (8, 8, 8))
        with open(trunc, "r+b") as f:
            f.truncate(1024 + 100)
        for path in (p, trunc):
            v = self.viewer("--open", path, "--screenshot", self.path("x.png"),
                            "--server", "http://127.0.0.1:9")
            self.assertEqual(v.wait(), 1)
            self.assertIn("Cannot open the tomogram", v.stderr())
            self.assertFalse(os.path.exists(self.path("x.png")))


class ViewerRestartTest(ViewerCase):
    def test_server_killed_and_restarted_while_watching(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (32, 96, 128))  # 12 blob windows: labels early
        port = free_port()
        s1 = Server(("--port", str(port))).start()
        self.addCleanup(s1.cleanup)
        self.assertEqual(s1.port, port)
        png, exported = self.path("shot.png"), self.path("shown.mrc")
        v = self.viewer("--server", s1.base, "--open", ph, "--submit", "--engine", "sim",
                        "--encoding", "zstd",
                        "--pattern", "blobs", "--hz", "5", "--duration", "40",
                        "--scale", "2", "--max-retries", "0",
                        "--screenshot", png, "--export-mask", exported)
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(r"^viewer: preview \d+ shown .*; [1-9]\d* voxels labelled\)$")
        s1.proc.send_signal(signal.SIGKILL)
        s1.proc.wait(10)
        v.wait_line(r"^viewer: connection lost \(.*\), reconnecting in [0-9.]+ s "
                    r"\(attempt \d+\)$")
        s2 = Server(("--port", str(port)), state_dir=s1.state_dir).start()
        self.addCleanup(s2.cleanup)
        v.wait_line(r"^viewer: reconnected to job %s \(state failed" % job_id)
        v.wait_line(r"^viewer: job failed: .*\(interrupted\)$")
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(2), "job failed")
        self.assertEqual(m.group(6), "preview", "the last preview stays shown")
        mask = read_mrc(exported)
        self.assertGreater(int((mask != 0).sum()), 0)
        cursor = tuple(int(m.group(i)) for i in (3, 4, 5))
        self.check_screenshot(png, read_mrc(ph), mask, cursor, float(m.group(7)))
        self.assertEqual(s2.job(job_id)["state"], "failed")


class ViewerUploadTest(ViewerCase):
    def start_server(self, *args):
        srv = Server(args).start()
        self.addCleanup(srv.cleanup)
        return srv

    def proxy(self, srv, **kw):
        p = Proxy(srv.port, **kw)
        self.addCleanup(p.close)
        return p

    def records(self):
        d = self.path("state/cryomamba/uploads")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def volumes(self, srv):
        r = srv.get("/v1/volumes")
        self.assertEqual(r.status, 200)
        return r.json

    def submit(self, url, ph, *extra):
        """--submit of `ph`, a short sim job, its end screenshot; returns
        (viewer, job id) once the viewer exited 0."""
        v = self.viewer("--server", url, "--open", ph, "--submit", "--hz", "4",
                        "--duration", "0.5", "--scale", "2",
                        "--screenshot", self.path("shot.png"), *extra)
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        return v, job_id

    def test_submit_uploads_the_file_then_reuses_its_volume(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (24, 40, 36))
        srv = self.start_server("--engine", "noop=exec true")
        p = self.proxy(srv)  # records what the viewer sends
        v, job_id = self.submit(p.url, ph, "--engine", "sim")
        up = [re.match(r"^viewer: uploaded (\S+): volume ([0-9a-f-]{36}) \(sha256 ([0-9a-f]{64}), "
                       r"(\d+) bytes sent\)$", l) for l in v.lines]
        up = [u for u in up if u]
        self.assertEqual(len(up), 1, v.lines)
        volume_id = up[0].group(2)
        self.assertEqual(int(up[0].group(4)), os.path.getsize(ph))
        self.assertIn("viewer: upload phase hashing", v.lines)
        self.assertIn("viewer: upload phase uploading", v.lines)
        self.assertIn("viewer: creating the job (engine sim, volume %s)" % volume_id, v.lines)
        job = srv.job(job_id)
        self.assertEqual(job["volume"]["volume_id"], volume_id)
        self.assertEqual(job["volume"]["shape"], [24, 40, 36])
        vol = srv.get("/v1/volumes/%s" % volume_id).json
        self.assertEqual(vol["sha256"], sha256_of(ph))
        self.assertEqual(vol["filename"], "phantom.mrc")
        # The engine went out with the job; the list came from the server.
        bodies = [h for h in p.heads if h.startswith(b"POST /v1/jobs ")]
        self.assertEqual(len(bodies), 1, p.heads)
        self.assertRegex(bodies[0], rb'"engine":\s*"sim"')
        names = [e["name"] for e in srv.get("/v1/server/info").json["engines"]]
        self.assertIn("noop", names)
        default = "classic" if "classic" in names else "sim"
        self.assertEqual(self.records(), [], "the resume record goes with success")
        # Again, without --engine: the same volume, nothing sent; the
        # default engine.
        v2, job2 = self.submit(srv.base, ph)
        self.assertIn("viewer: engines: %s (selected %s)" % (", ".join(names), default),
                      v2.lines)
        v2_dedup = [l for l in v2.lines if l.startswith("viewer: the server already has this "
                                                       "volume (sha256 %s)" % sha256_of(ph))]
        self.assertEqual(len(v2_dedup), 1, v2.lines)
        self.assertIn("viewer: uploaded %s: volume %s (sha256 %s, 0 bytes sent)"
                      % (ph, volume_id, sha256_of(ph)), v2.lines)
        self.assertEqual(srv.job(job2)["volume"]["volume_id"], volume_id)
        listing = self.volumes(srv)
        self.assertEqual(listing["total"], 1)
        # Another engine: the simulator's params stay home.
        _, job3 = self.submit(p.url, ph, "--engine", "noop")
        bodies = [h for h in p.heads if h.startswith(b"POST /v1/jobs ")]
        self.assertEqual(len(bodies), 2, p.heads)
        self.assertRegex(bodies[1], rb'"engine":\s*"noop"')
        for param in (b"pattern", b"seed", b"duration_s"):
            self.assertNotIn(param, bodies[1])
        self.assertEqual(srv.job(job3)["params"]["engine"], "noop")
        # An engine the server does not have: the server's refusal, named.
        bad = self.viewer("--server", srv.base, "--open", ph, "--submit",
                          "--engine", "nonesuch", "--screenshot", self.path("x.png"))
        self.assertEqual(bad.wait(), 1)
        self.assertIn("unknown_engine", bad.stderr())
        srv.assert_healthy()

    def test_cancel_during_the_upload_leaves_nothing(self):
        ph = self.path("big.mrc")
        make_phantom(ph, (64, 256, 640))  # 40 MiB: PATCHes of 16, 16, 8 MiB
        srv = self.start_server()
        # The second PATCH gets no byte of its body through: the viewer
        # cancels with 16 MiB on the server and the upload cannot end first.
        p = self.proxy(srv, hold_patch=2)
        v = self.viewer("--server", p.url, "--open", ph, "--submit", "--engine", "sim",
                        "--cancel-upload-after-bytes", str(16 << 20),
                        "--screenshot", self.path("shot.png"))
        m = v.wait_line(r"^viewer: cancelling the upload (/v1/uploads/[0-9a-f-]+): (\d+) of "
                        r"(\d+) bytes on the server$")
        self.assertEqual(int(m.group(2)), 16 << 20)
        self.assertEqual(int(m.group(3)), os.path.getsize(ph))
        v.wait_line(r"^viewer: upload cancelled$")
        shot = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(shot.group(2), "upload cancelled")
        self.assertFalse(any("submitted job" in l or "creating the job" in l for l in v.lines),
                         v.lines)
        self.assertEqual(self.volumes(srv)["total"], 0)
        self.assertEqual(srv.get("/v1/jobs").json["total"], 0)
        r = srv.request("HEAD", m.group(1), headers={"Tus-Resumable": "1.0.0"})
        self.assertEqual(r.status, 404, "the upload was terminated")
        # The server answers the DELETE once the removal is committed and
        # unlinks the file on its pool: poll for it, with a deadline.
        uploads = os.path.join(srv.state_dir, "uploads")
        deadline = time.monotonic() + 20
        while os.listdir(uploads) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition, not synchronising
        self.assertEqual(os.listdir(uploads), [], "the upload's file is removed")
        self.assertEqual(self.records(), [], "a cancel removes the resume record")
        srv.assert_healthy()

    def test_quit_mid_upload_then_the_next_submit_resumes(self):
        ph = self.path("big.mrc")
        make_phantom(ph, (64, 256, 640))  # 40 MiB: PATCHes of 16, 16, 8 MiB
        size = os.path.getsize(ph)
        srv = self.start_server()
        # Everything after the first PATCH and 512 KiB of the second waits:
        # 16 MiB are durable when the viewer quits, the rest cannot be.
        p = self.proxy(srv, total_cap=(16 << 20) + (512 << 10))
        v = self.viewer("--server", p.url, "--open", ph, "--submit", "--engine", "sim",
                        "--quit-after-upload-bytes", str(16 << 20),
                        "--screenshot", self.path("never.png"))
        m = v.wait_line(r"^viewer: quitting during the upload (/v1/uploads/[0-9a-f-]+): (\d+) "
                        r"of (\d+) bytes on the server$")
        self.assertEqual(int(m.group(2)), 16 << 20)
        self.assertEqual(int(m.group(3)), size)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertFalse(os.path.exists(self.path("never.png")))
        self.assertEqual(len(self.records()), 1, "quitting keeps the resume record")
        self.assertEqual(self.volumes(srv)["total"], 0)
        p.release()
        # The same file to the same server (the record names the proxy).
        v2, job_id = self.submit(p.url, ph, "--engine", "sim")
        r = [re.match(r"^viewer: resuming the upload at (\d+) of (\d+) bytes$", l)
             for l in v2.lines]
        r = [x for x in r if x]
        self.assertEqual(len(r), 1, v2.lines)
        self.assertEqual(int(r[0].group(1)), 16 << 20)
        self.assertEqual(int(r[0].group(2)), size)
        self.assertNotIn("viewer: upload phase hashing", v2.lines, "the record has the sha256")
        up = [re.match(r"^viewer: uploaded .*: volume ([0-9a-f-]{36}) \(sha256 ([0-9a-f]{64}), "
                       r"(\d+) bytes sent\)$", l) for l in v2.lines]
        up = [u for u in up if u]
        self.assertEqual(len(up), 1, v2.lines)
        self.assertEqual(up[0].group(2), sha256_of(ph))
        self.assertEqual(int(up[0].group(3)), size - (16 << 20), "the rest only")
        self.assertEqual(srv.job(job_id)["volume"]["volume_id"], up[0].group(1))
        self.assertEqual(self.records(), [])
        self.assertEqual(self.volumes(srv)["total"], 1)

    def test_shape_only_by_option_and_when_the_server_takes_no_uploads(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (20, 30, 40))
        srv = self.start_server()
        v, job_id = self.submit(srv.base, ph, "--no-upload", "--engine", "sim")
        self.assertIn("viewer: creating the job (engine sim, shape only)", v.lines)
        self.assertFalse(any(l.startswith("viewer: uploading") for l in v.lines), v.lines)
        job = srv.job(job_id)
        self.assertIsNone(job["volume"]["volume_id"])
        self.assertEqual(job["volume"]["shape"], [20, 30, 40])
        self.assertEqual(job["volume"]["voxel_size"], [10.0, 10.0, 10.0])
        # A server whose /v1/uploads answers 404: the viewer falls back.
        p = self.proxy(srv, refuse="/v1/uploads")
        v, job_id = self.submit(p.url, ph, "--engine", "sim")
        self.assertIn("viewer: the server takes no uploads (HTTP 404): submitting the shape only",
                      v.lines)
        self.assertIn("viewer: creating the job (engine sim, shape only)", v.lines)
        job = srv.job(job_id)
        self.assertIsNone(job["volume"]["volume_id"])
        self.assertEqual(job["volume"]["shape"], [20, 30, 40])
        self.assertEqual(self.volumes(srv)["total"], 0)
        self.assertTrue(any(h.startswith(b"POST /v1/uploads ") for h in p.heads), p.heads)

    def test_max_retries_bounds_the_upload_retries_too(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (8, 16, 16))
        srv = self.start_server()
        # Every upload request fails on the network (retryable; the OPTIONS
        # before hashing is only advisory); the server info and the rest go
        # through. Attempts are counted as creations (POST).
        p = self.proxy(srv, drop="/v1/uploads")

        def posts():
            return sum(1 for h in p.heads if h.startswith(b"POST /v1/uploads "))

        def run(*extra):
            before = posts()
            v = self.viewer("--server", p.url, "--open", ph, "--submit", "--engine", "sim",
                            "--screenshot", self.path("x.png"), *extra)
            v.wait_line(r"^viewer: upload failed: ")
            self.assertEqual(v.wait(), 1, "an error with automation exits 1")
            retries = [l for l in v.lines if re.match(r"^viewer: upload: .*; retrying in "
                                                      r"[0-9.]+ s \(retry \d+\)$", l)]
            return len(retries), posts() - before

        self.assertEqual(run("--max-retries", "2"), (2, 3), "2 retries: 3 attempts")
        # The preference bounds both as well; --max-retries overrides it.
        os.makedirs(self.path("config/cryomamba"), exist_ok=True)
        with open(self.path("config/cryomamba/viewer.ini"), "w") as f:
            f.write("[server]\nmax_retries=1\n")
        self.assertEqual(run(), (1, 2))
        self.assertEqual(run("--max-retries", "3"), (3, 4))
        self.assertEqual(self.volumes(srv)["total"], 0)
        self.assertFalse(os.path.exists(self.path("x.png")))

    def test_a_refused_upload_shows_the_servers_envelope(self):
        ph = self.path("phantom.mrc")
        make_phantom(ph, (8, 16, 16))
        srv = Server(env={"CRYOMAMBA_TOKEN": "s3cret"}).start()
        self.addCleanup(srv.cleanup)
        v = self.viewer("--server", srv.base, "--open", ph, "--submit", "--engine", "sim",
                        "--screenshot", self.path("x.png"))
        m = v.wait_line(r"^viewer: upload failed: (.*)$")
        self.assertEqual(v.wait(), 1, "an error with automation exits 1")
        self.assertIn("HTTP 401 unauthorized", m.group(1))
        self.assertIn("Cannot upload the volume", v.stderr())
        self.assertFalse(os.path.exists(self.path("x.png")))
        self.assertEqual(len(self.records()), 1, "kept: a token would let it go on")


class ViewerTlsTest(ViewerCase):
    """https:// (src/net/tls.c) behind a TLS-terminating proxy of
    test_tls.py: --cacert trusts the test CA; a certificate the CA did not
    sign is refused with OpenSSL's reason."""

    def setUp(self):
        super().setUp()
        from test_tls import Proxies, make_certs
        self.certs = self.path("certs")
        os.makedirs(self.certs)
        make_certs(self.certs)
        self.srv = Server().start()
        self.addCleanup(self.srv.cleanup)
        self.proxies = Proxies(self.srv.port)
        self.addCleanup(self.proxies.close)
        self.ph = self.path("phantom.mrc")
        make_phantom(self.ph, (8, 16, 16))

    def https(self, name):
        c = os.path.join(self.certs, name)
        return "https://localhost:%d" % self.proxies.add(c + ".pem", c + ".key")

    def test_submit_over_https_with_cacert(self):
        v = self.viewer("--server", self.https("good"), "--cacert",
                        os.path.join(self.certs, "ca.pem"), "--open", self.ph, "--submit",
                        "--engine", "sim", "--hz", "4", "--duration", "0.5",
                        "--screenshot", self.path("shot.png"))
        job_id = v.wait_line(r"^viewer: submitted job ([0-9a-f-]{36})$").group(1)
        m = v.wait_line(SHOT_RE)
        self.assertEqual(v.wait(), 0, v.stderr())
        self.assertEqual(m.group(2), "final mask")
        self.assertEqual(self.srv.job(job_id)["state"], "completed")

    def test_untrusted_certificate_is_refused(self):
        v = self.viewer("--server", self.https("selfsigned"), "--cacert",
                        os.path.join(self.certs, "ca.pem"), "--open", self.ph, "--submit",
                        "--engine", "sim", "--screenshot", self.path("x.png"))
        m = v.wait_line(r"^viewer: upload failed: (.*)$")
        self.assertEqual(v.wait(), 1, "an error with automation exits 1")
        self.assertIn("certificate verify failed: self-signed certificate", m.group(1))
        self.assertFalse(os.path.exists(self.path("x.png")))


if __name__ == "__main__":
    main()
