#!/usr/bin/python3
"""`cryomamba upload`, `volumes` and `submit FILE.mrc` (docs/cli.md) against
the real cryomambad: the volume's sha256 is hashlib's, --json parses, the
same file again sends nothing (the server logs one completion), Ctrl-C
stops cleanly (exit 130) and the same command resumes at the durable
offset, a server killed with -9 mid-upload and restarted on its state is
survived by the CLI's retries, submit makes a job of the uploaded volume,
volumes list/get/delete, a file that is not MRC fails clearly, and
--parallel 4 over tus concatenation when the server offers it.

Uploads go through a small TCP proxy here (Proxy) that paces what the CLI
sends and can hold it: the CLI is interrupted or the server killed while
bytes are provably still in flight, never after a sleep. Resume records go
to a private XDG_STATE_HOME per test. The CLI binary comes from
$CRYOMAMBA_CLI_BIN, the server from $CRYOMAMBA_SERVER_BIN (harness.py)."""

import json
import os
import queue
import re
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

from cli_util import CLI_BIN, TcpProxy, free_port, require_cli, sha256_of, wait_item  # noqa: E402
from harness import Server, main  # noqa: E402

RUN_TIMEOUT = 180
LINE_RE = re.compile(r"^upload ([0-9.]+)% phase=(\w+) durable=(\d+) total=(\d+)")


MAIN_PHASES = ["starting", "hashing", "uploading", "completing", "done"]


def phase_changes(lines):
    """The phases of the plain progress lines (and "retrying" notes), one
    entry per change."""
    out = []
    for line in lines:
        m = LINE_RE.match(line)
        p = m.group(2) if m else ("retrying" if "retrying in" in line else None)
        if p is not None and (not out or out[-1] != p):
            out.append(p)
    return out


def phase_order_error(phases):
    """None when `phases` keep client.h's order: the main phases only move
    forward; paused/retrying in between; completing -> uploading only right
    after one of those. Else what went wrong."""
    at, interrupted = 0, False
    for p in phases:
        if at == len(MAIN_PHASES) - 1:
            return "%s after done in %r" % (p, phases)
        if p in ("paused", "retrying"):
            interrupted = True
            continue
        r = MAIN_PHASES.index(p)
        if r < at and not (interrupted and at == 3 and r == 2):
            return "%s after %s in %r" % (p, MAIN_PHASES[at], phases)
        at, interrupted = r, False
    return None


class Proxy(TcpProxy):
    """Forwards TCP connections to 127.0.0.1:upstream. What the client sends
    is paced at `rate` bytes/s and waits while `hold()` is in effect; the
    answers go back unpaced. A connection the upstream refuses is closed."""

    def __init__(self, upstream, rate=None):
        self.rate = rate
        self.open = threading.Event()
        self.open.set()
        self.stopping = False
        self.forwarded = 0  # client bytes passed on
        self.lock = threading.Lock()
        super().__init__(upstream)

    def hold(self):
        self.open.clear()

    def release(self):
        self.open.set()

    def close(self):
        self.stopping = True
        self.open.set()
        super().close()

    def _serve(self, c):
        u = self.connect_upstream()
        if u is None:
            c.close()
            return
        back = threading.Thread(target=self._pump, args=(u, c, False), daemon=True)
        back.start()
        self._pump(c, u, True)
        back.join(60)
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass

    def _pump(self, src, dst, paced):
        try:
            while True:
                data = src.recv(64 * 1024)
                if not data:
                    break
                if paced:
                    while not self.open.wait(0.2):
                        if self.stopping:
                            return
                    if self.rate:
                        time.sleep(len(data) / self.rate)  # pacing, not syncing
                dst.sendall(data)
                if paced:
                    with self.lock:
                        self.forwarded += len(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Upload:
    """`cryomamba upload` in the background; its stderr lines are collected
    (plain progress lines: stderr is a pipe)."""

    def __init__(self, server_url, path, *extra, env=None):
        self.proc = subprocess.Popen(
            [CLI_BIN, "--server", server_url, "--json", "upload", path] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=env)
        self.lines = []
        self.q = queue.Queue()
        self.stdout = ""
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_out, daemon=True).start()

    def _pump(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def _pump_out(self):
        self.stdout = self.proc.stdout.read()

    def wait_line(self, pred, timeout=60):
        return wait_item(
            self.q, pred, timeout,
            lambda: "no matching line in %.0f s; got %r" % (timeout, self.lines[-10:]),
            lambda: "upload ended before the line; lines %r" % self.lines[-10:])

    def wait_durable(self, at_least=1):
        """The first progress line with at least `at_least` durable bytes."""
        def pred(line):
            m = LINE_RE.match(line)
            return m is not None and int(m.group(3)) >= at_least and \
                int(m.group(3)) < int(m.group(4))
        m = LINE_RE.match(self.wait_line(pred))
        return int(m.group(3)), int(m.group(4))

    def wait(self, timeout=RUN_TIMEOUT):
        rc = self.proc.wait(timeout)
        deadline = time.monotonic() + 10
        while not self.lines or self.lines[-1] is None:
            if time.monotonic() > deadline:
                break
            try:
                if self.q.get(timeout=0.5) is None:
                    break
            except queue.Empty:
                break
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass


class UploadTestBase(unittest.TestCase):
    server_args = ()

    def setUp(self):
        require_cli()
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-upl-cli-")
        self.state_home = os.path.join(self.tmp, "state")
        self.env = dict(os.environ)
        self.env.pop("CRYOMAMBA_TOKEN", None)
        self.env["XDG_STATE_HOME"] = self.state_home
        self.servers = []
        self.proxies = []
        self.uploads = []

    def tearDown(self):
        for u in self.uploads:
            u.kill()
        for p in self.proxies:
            p.close()
        for s in self.servers:
            s.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_server(self, args=(), **kw):
        s = Server(tuple(self.server_args) + tuple(args), **kw).start()
        self.servers.append(s)
        return s

    def proxy(self, port, rate=None):
        p = Proxy(port, rate)
        self.proxies.append(p)
        return p

    def cli(self, server_url, *args):
        e = dict(self.env)
        if server_url is not None:
            e["CRYOMAMBA_SERVER"] = server_url
        return subprocess.run([CLI_BIN] + list(args), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, env=e, stdin=subprocess.DEVNULL)

    def interrupt(self, u, p, at_least=1):
        """Ctrl-C to upload `u` once `at_least` bytes are durable, while
        proxy `p` holds what it still sends: the CLI stops (exit 130) with
        bytes provably in flight. Returns wait_durable's (durable, total);
        `p` stays held until p.release()."""
        got = u.wait_durable(at_least)
        p.hold()
        u.proc.send_signal(signal.SIGINT)
        self.assertEqual(u.wait(), 130, u.lines[-10:])
        return got

    def upload_bg(self, server_url, path, *extra):
        u = Upload(server_url, path, *extra, env=self.env)
        self.uploads.append(u)
        return u

    def phantom(self, name, shape, seed=1):
        path = os.path.join(self.tmp, name)
        r = self.cli(None, "phantom", "--shape", shape, "-o", path, "--seed", str(seed))
        self.assertEqual(r.returncode, 0, r.stderr)
        return path

    def assert_phases_forward(self, lines):
        err = phase_order_error(phase_changes(lines))
        self.assertIsNone(err, "the progress lines went back: %s" % err)

    def records(self):
        d = os.path.join(self.state_home, "cryomamba", "uploads")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def completions(self, server):
        """`upload.completed` lines in the server's log (a completion ran)."""
        with open(server.stderr_path, "rb") as f:
            return [json.loads(line) for line in f
                    if b'"upload.completed"' in line]

    def wait_completions(self, server, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.completions(server)) < n:
            if time.monotonic() > deadline:
                raise AssertionError("the server logged %d completions, not %d"
                                     % (len(self.completions(server)), n))
            time.sleep(0.05)  # polling the log file with a deadline
        return self.completions(server)


class UploadTest(UploadTestBase):
    def test_upload_gives_the_files_volume(self):
        s = self.start_server()
        path = self.phantom("tomo.mrc", "24,40,36", seed=3)
        r = self.cli(s.base, "--json", "upload", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertEqual(vol["shape"], [24, 40, 36])
        self.assertEqual(vol["filename"], "tomo.mrc")
        self.assertEqual(vol["size_bytes"], os.path.getsize(path))
        self.assertEqual(vol["upload"]["bytes_sent"], os.path.getsize(path))
        self.assertFalse(vol["upload"]["deduplicated"])
        self.assertFalse(vol["upload"]["resumed"])
        srv = s.get("/v1/volumes/%s" % vol["volume_id"])
        self.assertEqual(srv.status, 200)
        server_vol = srv.json
        for k in ("volume_id", "sha256", "shape", "voxel_size", "mode", "size_bytes",
                  "filename", "created_at"):
            self.assertEqual(vol[k], server_vol[k], k)
        self.assertEqual(self.records(), [], "the record goes with success")
        # Plain output for people; progress on stderr.
        other = self.phantom("other.mrc", "8,8,8", seed=4)
        r = self.cli(s.base, "upload", other)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"volume\s+[0-9a-f-]{36}")
        self.assertIn(sha256_of(other), r.stdout)
        self.assertIn("8 x 8 x 8", r.stdout)
        self.assertIn("phase=done", r.stderr)
        self.assertNotIn("\r", r.stderr, "no bar when stderr is not a terminal")

    def test_progress_phases_only_move_forward(self):
        # One chunk each: the last PATCH, all of it written, waits for the
        # server's check while the record's save lands; the lines said
        # "completing", then "uploading" again.
        s = self.start_server()
        for i in range(3):
            path = self.phantom("small%d.mrc" % i, "%d,16,16" % (6 + i), seed=50 + i)
            r = self.cli(s.base, "upload", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            phases = phase_changes(r.stderr.splitlines())
            self.assertIn("completing", phases)
            self.assertEqual(phases[-1], "done")
            self.assert_phases_forward(r.stderr.splitlines())

    def test_same_file_again_sends_nothing(self):
        s = self.start_server()
        path = self.phantom("tomo.mrc", "32,64,64", seed=5)
        first = self.cli(s.base, "--json", "upload", path)
        self.assertEqual(first.returncode, 0, first.stderr)
        v1 = json.loads(first.stdout)
        self.assertEqual(len(self.wait_completions(s, 1)), 1)
        copy = os.path.join(self.tmp, "copy.mrc")
        shutil.copyfile(path, copy)
        for p in (path, copy):
            again = self.cli(s.base, "--json", "upload", p)
            self.assertEqual(again.returncode, 0, again.stderr)
            v2 = json.loads(again.stdout)
            self.assertEqual(v2["volume_id"], v1["volume_id"])
            self.assertTrue(v2["upload"]["deduplicated"])
            self.assertEqual(v2["upload"]["bytes_sent"], 0)
            self.assertIn("already has this file", again.stderr)
        # The server ran no completion for the duplicates: no bytes came in.
        self.assertEqual(len(self.completions(s)), 1)
        listing = s.get("/v1/volumes").json
        self.assertEqual(listing["total"], 1)

    def test_not_an_mrc_file_fails_clearly(self):
        s = self.start_server()
        text = os.path.join(self.tmp, "notes.txt")
        with open(text, "w") as f:
            f.write("these are notes, not a tomogram\n" * 100)
        r = self.cli(s.base, "upload", text)
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertIn("not a valid MRC2014 file", r.stderr)
        r = self.cli(s.base, "upload", os.path.join(self.tmp, "missing.mrc"))
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertIn("cannot open", r.stderr)
        # Truncated: the header announces more voxels than the file has.
        good = self.phantom("t.mrc", "8,8,8")
        cut = os.path.join(self.tmp, "cut.mrc")
        with open(good, "rb") as f, open(cut, "wb") as g:
            g.write(f.read()[:1024 + 100])
        r = self.cli(s.base, "upload", cut)
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertIn("not a valid MRC2014 file", r.stderr)
        r = self.cli(s.base, "upload")
        self.assertEqual(r.returncode, 64)
        r = self.cli(s.base, "upload", good, "--parallel", "17")
        self.assertEqual(r.returncode, 64)
        self.assertIn("--parallel", r.stderr)
        self.assertEqual(s.get("/v1/volumes").json["total"], 0)
        for cmd in ("upload", "volumes"):
            r = self.cli(s.base, cmd, "--help")
            self.assertEqual(r.returncode, 0)
            self.assertIn("Usage: cryomamba " + cmd, r.stdout)

    def test_files_that_are_no_files_fail_at_once(self):
        """A careless user's "files": each gets one clear line and exit 9,
        at once (a FIFO must not hang), and nothing reaches the server."""
        s = self.start_server()
        d = os.path.join(self.tmp, "adir.mrc")
        os.mkdir(d)
        fifo = os.path.join(self.tmp, "pipe.mrc")
        os.mkfifo(fifo)
        empty = os.path.join(self.tmp, "empty.mrc")
        open(empty, "wb").close()
        missing = os.path.join(self.tmp, "missing.mrc")
        cases = [(d, "%s is a directory, not an MRC file"),
                 (fifo, "%s is a named pipe (FIFO), not a regular file: an upload reads "
                        "its file twice (hash, then chunks), so write it to a file first"),
                 (empty, "%s is empty (0 bytes), not an MRC file"),
                 (missing, "cannot open %s: No such file or directory")]
        for path, want in cases:
            for cmd in ("upload", "submit"):
                r = self.cli(s.base, cmd, path)
                self.assertEqual(r.returncode, 9, (path, r.stderr))
                self.assertEqual(r.stderr.strip(), "cryomamba upload: " + want % path)
        # A file this user may not read (root reads anything: the CLI then
        # runs as nobody, the directory open to it).
        secret = self.phantom("secret.mrc", "8,8,8")
        os.chmod(secret, 0)
        os.chmod(self.tmp, 0o755)
        as_nobody = (lambda: (os.setgid(65534), os.setuid(65534))) \
            if os.geteuid() == 0 else None
        r = subprocess.run([CLI_BIN, "--server", s.base, "upload", secret], capture_output=True,
                           text=True, timeout=RUN_TIMEOUT, env=self.env,
                           stdin=subprocess.DEVNULL, preexec_fn=as_nobody)
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertEqual(r.stderr.strip(),
                         "cryomamba upload: cannot open %s: Permission denied" % secret)
        self.assertEqual(s.get("/v1/volumes").json["total"], 0)
        self.assertEqual(self.records(), [])

    def last_line(self, r_or_lines):
        lines = r_or_lines if isinstance(r_or_lines, list) else r_or_lines.stderr.splitlines()
        return [l for l in lines if not LINE_RE.match(l)][-1]

    def test_file_over_the_servers_limit_is_refused_before_hashing(self):
        path = self.phantom("big.mrc", "32,64,64", seed=60)  # 512 KiB
        size = os.path.getsize(path)
        s = self.start_server(("--max-upload-bytes", str(size - 1)))
        r = self.cli(s.base, "upload", path)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(self.last_line(r),
                         "cryomamba: uploading %s: the file is %d bytes; this server takes "
                         "uploads of up to %d bytes (Tus-Max-Size) (HTTP 413 payload_too_large); "
                         "hint: its operator sets that limit (cryomambad --max-upload-bytes)"
                         % (path, size, size - 1))
        self.assertNotIn("phase=hashing", r.stderr, "refused before hashing")
        self.assertNotIn("retrying", r.stderr)
        self.assertEqual(self.records(), [])
        self.assertEqual(s.get("/v1/volumes").json["total"], 0)

    def test_out_of_room_keeps_the_record_then_too_large_removes_it(self):
        port = free_port()
        path = self.phantom("big.mrc", "32,64,64", seed=61)
        size = os.path.getsize(path)
        # A server without room for it (its storage quota): 507, not
        # retried, the record (with the file's sha256) kept.
        s1 = self.start_server(("--port", str(port), "--storage-quota-bytes", str(size // 2)))
        r = self.cli(s1.base, "upload", path)
        self.assertEqual(r.returncode, 10, r.stderr)
        line = self.last_line(r)
        self.assertRegex(line, r"^cryomamba: uploading %s: .*\(HTTP 507 insufficient_storage\)"
                         % re.escape(path))
        self.assertTrue(line.endswith("; 0 B of %.1f kB are on the server and the resume record "
                                      "is kept: once the server has room, run the same command "
                                      "again to resume" % (size / 1000)), line)
        self.assertNotIn("retrying", r.stderr)
        self.assertEqual(len(self.records()), 1, "kept: room may come")
        s1.stop()
        # The same address, now with a limit under the file's size: the
        # record has the sha256 (no hashing, no early OPTIONS), the
        # creation is refused (413) and the record goes: it cannot be of use.
        s2 = self.start_server(("--port", str(port), "--max-upload-bytes", str(size - 1)),
                               state_dir=s1.state_dir)
        r = self.cli(s2.base, "upload", path)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("(HTTP 413 payload_too_large)", self.last_line(r))
        self.assertNotIn("phase=hashing", r.stderr)
        self.assertEqual(self.records(), [])

    def test_disk_full_mid_upload_then_room_again(self):
        port = free_port()
        s1 = self.start_server(("--port", str(port)))
        path = self.phantom("big.mrc", "64,256,256", seed=62)  # 16 MiB
        size = os.path.getsize(path)
        p = self.proxy(port, rate=4 << 20)
        u = self.upload_bg(p.url, path, "--chunk-mib", "1")
        durable, _ = self.interrupt(u, p, 2 << 20)
        s1.stop()
        p.release()
        # Restarted with a quota the bytes already there fill: the next
        # PATCH is 507. Not retried; the record stays.
        s2 = self.start_server(("--port", str(port), "--storage-quota-bytes", str(durable)),
                               state_dir=s1.state_dir)
        r = self.cli(p.url, "upload", path, "--chunk-mib", "1")
        self.assertEqual(r.returncode, 10, r.stderr)
        self.assertIn("resuming at", r.stderr)
        self.assertIn("(HTTP 507 insufficient_storage)", self.last_line(r))
        self.assertIn("run the same command again to resume", self.last_line(r))
        self.assertNotIn("retrying", r.stderr)
        self.assertEqual(len(self.records()), 1)
        s2.stop()
        # Room again: the same command finishes from where it was.
        self.start_server(("--port", str(port)), state_dir=s1.state_dir)
        r = self.cli(p.url, "--json", "upload", path, "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertTrue(vol["upload"]["resumed"])
        self.assertLess(vol["upload"]["bytes_sent"], size)
        self.assertEqual(self.records(), [])

    def test_server_gone_for_good_mid_upload(self):
        port = free_port()
        s1 = self.start_server(("--port", str(port)))
        path = self.phantom("big.mrc", "64,256,256", seed=63)
        p = self.proxy(port, rate=4 << 20)
        u = self.upload_bg(p.url, path, "--chunk-mib", "1", "--max-retries", "2")
        u.wait_durable(2 << 20)
        p.hold()
        s1.proc.send_signal(signal.SIGKILL)
        s1.proc.wait(10)
        p.release()
        self.assertEqual(u.wait(), 7, u.lines[-10:])
        retries = [l for l in u.lines if "retrying in" in l]
        self.assertEqual(len(retries), 2, u.lines)
        line = self.last_line(u.lines)
        self.assertRegex(line, r"^cryomamba: uploading %s: cannot reach the server at .*; gave up "
                         r"after 2 retries with [0-9.]+ MB of [0-9.]+ MB on the server; run the "
                         r"same command again to resume$" % re.escape(path))
        self.assertEqual(len(self.records()), 1, "kept for the resume")
        # And it does resume, once the server is back.
        self.start_server(("--port", str(port)), state_dir=s1.state_dir)
        r = self.cli(p.url, "--json", "upload", path, "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["upload"]["resumed"])
        self.assertEqual(json.loads(r.stdout)["sha256"], sha256_of(path))

    def test_unreachable_server(self):
        path = self.phantom("t.mrc", "8,8,8")
        url = "http://127.0.0.1:%d" % free_port()
        r = self.cli(url, "upload", path, "--max-retries", "1")
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("cannot reach the server", r.stderr)
        self.assertEqual(len(self.records()), 1, "kept: the upload may go on later")
        # --max-retries reaches the library: N retries, then the end (the
        # library's default would be 10); submit FILE's too.
        for cmd, n in (("upload", 1), ("upload", 3), ("submit", 2)):
            r = self.cli(url, cmd, path, "--max-retries", str(n))
            self.assertEqual(r.returncode, 7, r.stderr)
            retries = re.findall(r"retrying in [0-9.]+ s \(retry (\d+)\)", r.stderr)
            self.assertEqual(retries, [str(i) for i in range(1, n + 1)], r.stderr)

    def test_ctrl_c_then_the_same_command_resumes(self):
        s = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=6)  # 16 MiB
        size = os.path.getsize(path)
        p = self.proxy(s.port, rate=4 << 20)
        u = self.upload_bg("http://localhost:%d" % p.port, path, "--chunk-mib", "1")
        # Nothing more gets through until the CLI has stopped.
        durable, total = self.interrupt(u, p)
        self.assertEqual(total, size)
        self.assertTrue(any("run the same command again" in line for line in u.lines), u.lines)
        self.assertEqual(len(self.records()), 1, "the record stays")
        p.release()
        # The same command again, through the proxy: the record names the
        # server by its address (the proxy's), however the URL is spelled.
        r = self.cli("HTTP://LocalHost:%d/" % p.port, "--json", "upload", path,
                     "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"resuming at .* \((\d+) of (\d+) bytes are on the server\)", r.stderr)
        self.assertIsNotNone(m, r.stderr)
        at = int(m.group(1))
        self.assertGreaterEqual(at, durable)
        self.assertGreater(at, 0)
        self.assertLess(at, size)
        self.assertEqual(int(m.group(2)), size)
        vol = json.loads(r.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertTrue(vol["upload"]["resumed"])
        self.assertEqual(vol["upload"]["resumed_at"], at)
        self.assertEqual(vol["upload"]["bytes_sent"], size - at)
        self.assertNotIn("phase=hashing", r.stderr, "the sha256 came from the record")
        self.assert_phases_forward(u.lines)
        self.assert_phases_forward(r.stderr.splitlines())
        self.assertEqual(self.records(), [])

    def test_no_resume_starts_afresh(self):
        s = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=7)
        p = self.proxy(s.port, rate=4 << 20)
        u = self.upload_bg(p.url, path, "--chunk-mib", "1")
        self.interrupt(u, p)
        p.release()
        r = self.cli(p.url, "--json", "upload", path, "--no-resume")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertFalse(vol["upload"]["resumed"])
        self.assertEqual(vol["upload"]["bytes_sent"], os.path.getsize(path))
        self.assertEqual(vol["sha256"], sha256_of(path))

    def test_changed_file_starts_over(self):
        s = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=8)
        p = self.proxy(s.port, rate=4 << 20)
        u = self.upload_bg(p.url, path, "--chunk-mib", "1")
        self.interrupt(u, p)
        p.release()
        # Another tomogram under the same name: size or mtime differ.
        self.phantom("big.mrc", "64,256,255", seed=9)
        r = self.cli(p.url, "--json", "upload", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertFalse(vol["upload"]["resumed"])
        self.assertEqual(vol["shape"], [64, 256, 255])
        self.assertEqual(vol["sha256"], sha256_of(path))

    def test_server_killed_mid_upload_is_survived(self):
        port = free_port()
        s1 = self.start_server(("--port", str(port)))
        path = self.phantom("big.mrc", "64,256,256", seed=10)
        p = self.proxy(port, rate=4 << 20)
        u = self.upload_bg(p.url, path, "--chunk-mib", "1", "--max-retries", "30")
        durable, _ = u.wait_durable(4 << 20)
        p.hold()
        s1.proc.send_signal(signal.SIGKILL)
        s1.proc.wait(10)
        p.release()
        u.wait_line(lambda line: "retrying in" in line)
        self.start_server(("--port", str(port)), state_dir=s1.state_dir)
        self.assertEqual(u.wait(), 0, u.lines[-10:])
        vol = json.loads(u.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertGreater(vol["upload"]["retries"], 0)
        # What was durable before the kill (at least 4 MiB) was not sent
        # again: one chunk in flight (1 MiB) at most is sent twice.
        self.assertGreaterEqual(durable, 4 << 20)
        self.assertLessEqual(vol["upload"]["bytes_sent"], os.path.getsize(path) + (1 << 20))
        self.assert_phases_forward(u.lines)
        self.assertEqual(self.records(), [])

    def test_submit_uploads_and_makes_a_job_of_the_volume(self):
        s = self.start_server()
        path = self.phantom("tomo.mrc", "20,30,40", seed=11)
        r = self.cli(s.base, "--json", "submit", path, "--duration", "0.2")
        self.assertEqual(r.returncode, 0, r.stderr)
        job = json.loads(r.stdout)
        vols = s.get("/v1/volumes").json["volumes"]
        self.assertEqual(len(vols), 1)
        self.assertEqual(vols[0]["sha256"], sha256_of(path))
        got = s.job(job["job_id"])
        self.assertEqual(got["volume"]["shape"], vols[0]["shape"])
        self.assertEqual(got["volume"]["voxel_size"], vols[0]["voxel_size"])
        self.assertEqual(got["volume"]["volume_id"], vols[0]["volume_id"])
        self.assertIn("is volume %s" % vols[0]["volume_id"], r.stderr)
        # Again: the volume is reused, not uploaded twice.
        r = self.cli(s.base, "--json", "submit", path, "--duration", "0.2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("already has this file", r.stderr)
        self.assertEqual(s.get("/v1/volumes").json["total"], 1)
        # --no-upload: today's shape-only job, no volume.
        other = self.phantom("other.mrc", "10,12,14", seed=12)
        r = self.cli(s.base, "--json", "submit", other, "--no-upload", "--duration", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["volume"]["shape"], [10, 12, 14])
        self.assertEqual(s.get("/v1/volumes").json["total"], 1)
        r = self.cli(s.base, "submit", "--shape", "4,4,4", "--no-upload")
        self.assertEqual(r.returncode, 64)

    def test_volumes_list_get_delete(self):
        s = self.start_server()
        ids = []
        for i in range(3):
            path = self.phantom("v%d.mrc" % i, "8,8,%d" % (8 + i), seed=20 + i)
            r = self.cli(s.base, "--json", "upload", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            ids.append(json.loads(r.stdout)["volume_id"])
        r = self.cli(s.base, "--json", "volumes")
        self.assertEqual(r.returncode, 0, r.stderr)
        listing = json.loads(r.stdout)
        self.assertEqual([v["volume_id"] for v in listing["volumes"]], ids[::-1])
        self.assertEqual(listing["total"], 3)
        # One page of 2, then the rest from its cursor.
        r = self.cli(s.base, "--json", "volumes", "list", "--limit", "2")
        page = json.loads(r.stdout)
        self.assertEqual(page["count"], 2)
        self.assertEqual(page["next_cursor"], ids[1])
        r = self.cli(s.base, "--json", "volumes", "list", "--limit", "2",
                     "--cursor", page["next_cursor"])
        self.assertEqual([v["volume_id"] for v in json.loads(r.stdout)["volumes"]], [ids[0]])
        r = self.cli(s.base, "volumes", "list")
        self.assertEqual(r.returncode, 0)
        for i in ids:
            self.assertIn(i, r.stdout)
        r = self.cli(s.base, "--json", "volumes", "get", ids[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["shape"], [8, 8, 8])
        r = self.cli(s.base, "volumes", "get", ids[0])
        self.assertIn("8 x 8 x 8", r.stdout)
        r = self.cli(s.base, "volumes", "delete", ids[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("deleted", r.stdout)
        r = self.cli(s.base, "volumes", "get", ids[0])
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("volume_not_found", r.stderr)
        self.assertEqual(s.get("/v1/volumes/%s" % ids[0]).status, 404)
        r = self.cli(s.base, "volumes", "get", "not-a-uuid")
        self.assertEqual(r.returncode, 64)
        r = self.cli(s.base, "volumes", "frobnicate")
        self.assertEqual(r.returncode, 64)

    def test_token_is_sent_and_401_is_clear(self):
        s = self.start_server(env={"CRYOMAMBA_TOKEN": "s3cret"})
        path = self.phantom("t.mrc", "8,16,16", seed=40)
        r = self.cli(s.base, "upload", path)
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("401", r.stderr)
        self.assertIn("--token", r.stderr)
        self.assertEqual(len(self.records()), 1, "kept: a token fixes it")
        r = self.cli(s.base, "--token", "s3cret", "--json", "upload", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["sha256"], sha256_of(path))
        r = self.cli(s.base, "--token", "s3cret", "--json", "volumes")
        self.assertEqual(json.loads(r.stdout)["total"], 1)
        self.assertEqual(self.records(), [])

    def test_parallel_streams_over_concatenation(self):
        s = self.start_server()
        r = s.request("OPTIONS", "/v1/uploads")
        ext = r.header("Tus-Extension") or ""
        if "concatenation" not in ext:
            self.skipTest("this server offers no tus concatenation (Tus-Extension: %s)" % ext)
        path = self.phantom("big.mrc", "64,256,256", seed=30)  # 16 MiB
        r = self.cli(s.base, "--json", "upload", path, "--parallel", "4", "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertEqual(vol["upload"]["streams"], 4)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertEqual(vol["upload"]["bytes_sent"], os.path.getsize(path))
        # Interrupted and resumed, in parallel.
        path2 = self.phantom("big2.mrc", "64,256,256", seed=31)
        p = self.proxy(s.port, rate=4 << 20)
        u = self.upload_bg(p.url, path2, "--parallel", "4", "--chunk-mib", "1")
        self.interrupt(u, p)
        p.release()
        r = self.cli(p.url, "--json", "upload", path2, "--parallel", "4", "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertTrue(vol["upload"]["resumed"])
        self.assertGreater(vol["upload"]["resumed_at"], 0)
        self.assertEqual(vol["upload"]["streams"], 4)
        self.assertEqual(vol["sha256"], sha256_of(path2))
        self.assertIn("resuming at", r.stderr)


if __name__ == "__main__":
    main()
