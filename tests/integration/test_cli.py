#!/usr/bin/python3
"""The `cryomamba` CLI (docs/cli.md) against the real cryomambad: submit ->
watch -> completed -> download round trip, phantom volumes readable by
mrcfile, clear failures with documented exit codes, cancel from another
process, and the server killed and restarted while `watch` runs (it
reconnects, reports it, and ends with the interrupted job's failure).

The CLI binary comes from $CRYOMAMBA_CLI_BIN (default build/src/cli/cryomamba),
the server from $CRYOMAMBA_SERVER_BIN (harness.py)."""

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from cli_util import CLI_BIN, TcpProxy, free_port, require_cli, wait_item  # noqa: E402
from harness import Server, main  # noqa: E402

RUN_TIMEOUT = 120


def read_mask(data):
    """The uint8 voxels of MRC bytes, through mrcfile."""
    fd, path = tempfile.mkstemp(suffix=".mrc")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with mrcfile.open(path) as m:
            return np.array(m.data).astype(np.uint8)
    finally:
        os.unlink(path)


def cli(server, *args, timeout=RUN_TIMEOUT, env=None):
    e = dict(os.environ)
    e.pop("CRYOMAMBA_TOKEN", None)
    if server is not None:
        e["CRYOMAMBA_SERVER"] = "http://127.0.0.1:%d" % server.port
    if env:
        e.update(env)
    return subprocess.run([CLI_BIN] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


class WsSniffer(TcpProxy):
    """A TCP proxy to 127.0.0.1:upstream that reads the WebSocket frames
    going each way after the handshake and keeps every close frame it sees
    as (who, code): who is "client" or "server", code None when the frame
    has no payload."""

    def __init__(self, upstream):
        self.closes = []
        self.cond = threading.Condition()
        super().__init__(upstream, backlog=16)

    def wait_closes(self, n, timeout=30):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.closes) >= n, timeout):
                raise AssertionError("%d close frames seen, not %d: %r"
                                     % (len(self.closes), n, self.closes))
            return list(self.closes)

    def _serve(self, c):
        u = self.connect_upstream()
        if u is None:
            c.close()
            return
        threading.Thread(target=self._pump, args=(u, c, "server"), daemon=True).start()
        self._pump(c, u, "client")

    def _pump(self, src, dst, who):
        buf, upgraded = b"", False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Frames are read before they are passed on: a close is
                # recorded before the peer can answer it.
                buf += data
                if not upgraded and b"\r\n\r\n" in buf:
                    buf, upgraded = buf[buf.index(b"\r\n\r\n") + 4:], True
                if upgraded:
                    buf = self._frames(buf, who)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _frames(self, buf, who):
        """Consumes whole frames from buf; returns the rest."""
        while len(buf) >= 2:
            op, masked, n = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            key = buf[at:at + 4] if masked else None
            at += 4 if masked else 0
            if len(buf) < at + n:
                break
            payload = buf[at:at + n]
            if op == 8:
                if key is not None:
                    payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                with self.cond:
                    self.closes.append((who, code))
                    self.cond.notify_all()
            buf = buf[at + n:]
        return buf


class Watcher:
    """`cryomamba --json watch` in the background; its NDJSON events are
    collected line by line."""

    def __init__(self, port, job_id, *extra):
        env = dict(os.environ)
        env["CRYOMAMBA_SERVER"] = "http://127.0.0.1:%d" % port
        self.proc = subprocess.Popen([CLI_BIN, "--json", "watch", job_id] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=env)
        self.events = []
        self.q = queue.Queue()
        self.stderr = ""
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events.append(ev)
            self.q.put(ev)
        self.q.put(None)

    def _pump_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_event(self, pred, timeout=60):
        return wait_item(
            self.q, pred, timeout,
            lambda: "no matching watch event in %.0f s; got %r" % (timeout, self.events[-10:]),
            lambda: "watch ended before the event; events %r stderr %r"
            % (self.events[-10:], self.stderr))

    def wait(self, timeout=RUN_TIMEOUT):
        rc = self.proc.wait(timeout)
        time.sleep(0.2)  # let the pump threads drain
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


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_cli()
        cls.server = Server(("--max-running", "4")).start()
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-cli-")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()

    def submit(self, *args):
        r = cli(self.server, "--json", "submit", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        job = json.loads(r.stdout)
        return job["job_id"]

    def test_phantom_is_readable_by_mrcfile(self):
        path = os.path.join(self.tmp, "vol.mrc")
        r = cli(None, "phantom", "--shape", "20,30,40", "-o", path, "--voxel-size", "7.5",
                "--seed", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        with mrcfile.open(path, permissive=False) as m:
            self.assertEqual(m.data.shape, (20, 30, 40))
            self.assertEqual(m.data.dtype, np.float32)
            self.assertAlmostEqual(float(m.voxel_size.x), 7.5, places=3)
            data = np.array(m.data)
            self.assertAlmostEqual(float(m.header.dmin), float(data.min()), places=3)
            self.assertAlmostEqual(float(m.header.dmax), float(data.max()), places=3)
        self.assertGreater(float(data.std()), 0.1)
        self.assertLess(float(data.min()), -1.0)  # membranes/particles are dense (dark)
        again = os.path.join(self.tmp, "vol2.mrc")
        cli(None, "phantom", "--shape", "20,30,40", "-o", again, "--voxel-size", "7.5",
            "--seed", "3")
        with open(path, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read(), "phantoms are deterministic")

    def test_blobs_segment_the_phantom_of_the_same_seed(self):
        """The simulated segmentation of a blobs job finds the structures of
        `phantom --seed N` when the job has seed N: its membrane and particle
        voxels are dense (dark) in the tomogram, its background is not."""
        vol = os.path.join(self.tmp, "seg.mrc")
        self.assertEqual(cli(None, "phantom", "--shape", "40,64,64", "-o", vol,
                             "--seed", "7", "--noise", "0.3").returncode, 0)
        job_id = self.submit(vol, "--duration", "0.3", "--pattern", "blobs", "--seed", "7")
        self.server.wait_state(job_id, "completed")
        mask = read_mask(self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id).body)
        with mrcfile.open(vol) as m:
            tomo = np.array(m.data)
        background = float(tomo[mask == 0].mean())
        self.assertGreater((mask == 1).sum(), 100)
        self.assertGreater((mask == 2).sum(), 100)
        self.assertLess(float(tomo[mask == 1].mean()), background - 0.5)
        self.assertLess(float(tomo[mask == 2].mean()), background - 0.3)
        # another seed's mask does not line up with this tomogram
        other = self.submit(vol, "--duration", "0.3", "--pattern", "blobs", "--seed", "8")
        self.server.wait_state(other, "completed")
        mask8 = read_mask(self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % other).body)
        self.assertGreater(float(tomo[mask8 == 1].mean()), float(tomo[mask == 1].mean()) + 0.3)

    def test_round_trip_submit_watch_download(self):
        vol = os.path.join(self.tmp, "rt.mrc")
        self.assertEqual(cli(None, "phantom", "--shape", "24,40,36", "-o", vol,
                             "--voxel-size", "2.5").returncode, 0)
        job_id = self.submit(vol, "--hz", "10", "--scale", "2", "--duration", "1.5",
                             "--pattern", "blobs", "--seed", "5")
        job = self.server.job(job_id)
        self.assertEqual(job["volume"]["shape"], [24, 40, 36])
        self.assertEqual(job["volume"]["voxel_size"], [2.5, 2.5, 2.5])
        pdir = os.path.join(self.tmp, "previews-%s" % job_id)
        r = cli(self.server, "--json", "watch", job_id, "--save-previews", pdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        kinds = [e["event"] for e in events]
        self.assertIn("connected", kinds)
        self.assertIn("completed", kinds)
        self.assertEqual(events[-1]["event"], "end")
        self.assertEqual(events[-1]["exit_code"], 0)
        seqs = [e["seq"] for e in events if "seq" in e and e["event"] not in
                ("connected", "error")]
        self.assertEqual(seqs, sorted(set(seqs)), "each event once, in seq order")
        previews = [e for e in events if e["event"] == "preview"]
        self.assertGreater(len(previews), 0)
        for p in previews:
            self.assertEqual(p["shape"], [12, 20, 18])
            self.assertEqual(p["bytes"], 12 * 20 * 18)
            with mrcfile.open(p["saved"]) as m:
                self.assertEqual(m.data.shape, (12, 20, 18))
                self.assertAlmostEqual(float(m.voxel_size.x), 5.0, places=3)
        # status / jobs
        r = cli(self.server, "--json", "status", job_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["state"], "completed")
        r = cli(self.server, "status", job_id)
        self.assertIn("completed", r.stdout)
        r = cli(self.server, "--json", "jobs")
        self.assertIn(job_id, [j["job_id"] for j in json.loads(r.stdout)["jobs"]])
        # download: same bytes as the server's artifact; the last preview is
        # the final mask downsampled
        out = os.path.join(self.tmp, "mask-%s.mrc" % job_id)
        r = cli(self.server, "download", job_id, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        art = self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), art.body)
        self.assertFalse(os.path.exists(out + ".part"))
        with mrcfile.open(out) as m:
            mask = np.array(m.data)
        with mrcfile.open(previews[-1]["saved"]) as m:
            last = np.array(m.data).astype(np.uint8)
        self.assertTrue(np.array_equal(mask.astype(np.uint8)[::2, ::2, ::2], last))

    def test_binary_encodings_give_the_same_previews(self):
        """watch --encoding raw|zstd (binary previews) saves exactly the
        voxels the default JSON + base64 stream carries: three watchers of
        one blobs job save the same final preview, equal to the artifact
        downsampled."""
        job_id = self.submit("--shape", "20,30,26", "--scale", "2", "--hz", "5",
                             "--duration", "1.5", "--pattern", "blobs", "--seed", "9")
        procs = {}
        for enc in ("base64", "raw", "zstd"):
            pdir = os.path.join(self.tmp, "enc-%s-%s" % (enc, job_id))
            procs[enc] = subprocess.Popen(
                [CLI_BIN, "--server", self.server.base, "--json", "watch", job_id,
                 "--save-previews", pdir, "--encoding", enc],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        finals = {}
        for enc, p in procs.items():
            out, err = p.communicate(timeout=RUN_TIMEOUT)
            self.assertEqual(p.returncode, 0, "%s: %s" % (enc, err))
            previews = [e for e in map(json.loads, out.splitlines())
                        if e["event"] == "preview"]
            self.assertTrue(previews, enc)
            with mrcfile.open(previews[-1]["saved"]) as m:
                finals[enc] = (previews[-1]["seq"], np.array(m.data).astype(np.uint8))
        self.assertEqual(finals["raw"][0], finals["base64"][0])
        self.assertEqual(finals["zstd"][0], finals["base64"][0])
        self.assertTrue(np.array_equal(finals["raw"][1], finals["base64"][1]))
        self.assertTrue(np.array_equal(finals["zstd"][1], finals["base64"][1]))
        art = self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id)
        mask = read_mask(art.body)
        self.assertTrue(np.array_equal(mask[::2, ::2, ::2], finals["zstd"][1]))
        r = cli(self.server, "watch", job_id, "--encoding", "gzip")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--encoding", r.stderr)

    def test_plain_output_when_not_a_terminal(self):
        job_id = self.submit("--shape", "8,8,8", "--hz", "10", "--duration", "0.5")
        r = cli(self.server, "watch", job_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\r", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("progress 100.0%", r.stdout)
        self.assertIn("completed", r.stdout.splitlines()[-1])

    def test_previews_too_large_for_the_client_are_skipped(self):
        """A preview over --max-message-bytes (a 64^3 job's base64 preview
        is ~350 kB, the limit 64K) is skipped with one warning, counted, and
        the watch still follows the job to `completed` on one connection."""
        job_id = self.submit("--shape", "64,64,64", "--hz", "10", "--duration", "1")
        r = cli(self.server, "--json", "watch", job_id, "--max-message-bytes", "64K")
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        kinds = [e["event"] for e in events]
        self.assertNotIn("preview", kinds)
        self.assertIn("completed", kinds)
        skipped = [e for e in events if e["event"] == "error"]
        self.assertTrue(skipped)
        self.assertEqual({e["kind"] for e in skipped}, {"skipped"})
        self.assertTrue(all(e["seq"] > 0 for e in skipped), skipped)
        end = events[-1]
        self.assertEqual(end["event"], "end")
        self.assertEqual(end["skipped"], len(skipped))
        self.assertEqual(end["reconnects"], 0)
        states = [e["state"] for e in events if e["event"] == "connection"]
        self.assertNotIn("reconnecting", states)
        # Plain output: one warning on stderr, the count on the last line.
        r = cli(self.server, "watch", job_id, "--max-message-bytes", "64K")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("warning:"), 1, r.stderr)
        self.assertIn("--max-message-bytes", r.stderr)
        self.assertIn("1 skipped as too large", r.stdout.splitlines()[-1])
        r = cli(self.server, "watch", job_id, "--max-message-bytes", "1K")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--max-message-bytes", r.stderr)

    def test_submit_watch_in_one_go(self):
        r = cli(self.server, "submit", "--shape", "6,7,8", "--duration", "0.3", "--watch")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("completed", r.stdout)

    def test_failures_are_clear_with_exit_codes(self):
        unknown = "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10"
        r = cli(self.server, "status", unknown)
        self.assertEqual(r.returncode, 5)
        self.assertIn("job_not_found", r.stderr)
        r = cli(self.server, "watch", unknown)
        self.assertEqual(r.returncode, 5, r.stderr)
        r = cli(self.server, "--json", "status", unknown)
        self.assertEqual(json.loads(r.stdout)["error"]["exit_code"], 5)
        r = cli(self.server, "status", "not-a-uuid")
        self.assertEqual(r.returncode, 64)
        r = cli(self.server, "submit", "--shape", "0,1,2")
        self.assertEqual(r.returncode, 64)
        self.assertIn("--shape", r.stderr)
        r = cli(self.server, "frobnicate")
        self.assertEqual(r.returncode, 64)
        r = cli(self.server, "submit", "/nonexistent.mrc")
        self.assertEqual(r.returncode, 9)
        r = cli(self.server, "submit", "--server-path", "../escape.mrc")
        self.assertEqual(r.returncode, 4)
        self.assertIn("invalid_volume_path", r.stderr)
        port = free_port()
        r = cli(None, "--server", "http://127.0.0.1:%d" % port, "health")
        self.assertEqual(r.returncode, 7)
        self.assertIn("cannot reach the server", r.stderr)
        r = cli(None, "--server", "ftp://example.org", "health")
        self.assertEqual(r.returncode, 64)
        self.assertIn("http[s]://host", r.stderr)  # https: test_tls.py
        # a completed job cannot be cancelled; a running one cannot be downloaded
        done = self.submit("--shape", "4,4,4", "--duration", "0")
        self.server.wait_state(done, "completed")
        r = cli(self.server, "cancel", done)
        self.assertEqual(r.returncode, 4)
        self.assertIn("job_finished", r.stderr)
        running = self.submit("--shape", "4,4,4", "--duration", "600")
        r = cli(self.server, "download", running, "-o", os.path.join(self.tmp, "x.mrc"))
        self.assertEqual(r.returncode, 4)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.mrc.part")))
        cli(self.server, "cancel", running)
        r = cli(self.server, "health")
        self.assertEqual(r.returncode, 0)
        self.assertIn("cryomambad", r.stdout)
        for cmd in ("submit", "watch", "status", "jobs", "cancel", "download", "health",
                    "phantom"):
            r = cli(self.server, cmd, "--help")
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("Usage: cryomamba " + cmd, r.stdout)
        r = cli(self.server, "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Exit status", r.stdout)

    def test_ctrl_c_closes_the_watch_cleanly(self):
        job_id = self.submit("--shape", "8,16,16", "--duration", "120", "--hz", "4")
        self.addCleanup(cli, self.server, "cancel", job_id)
        for mode in ("json", "plain"):
            sniff = WsSniffer(self.server.port)
            self.addCleanup(sniff.close)
            env = dict(os.environ)
            env["CRYOMAMBA_SERVER"] = "http://127.0.0.1:%d" % sniff.port
            args = [CLI_BIN] + (["--json"] if mode == "json" else []) + ["watch", job_id]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, env=env)
            self.addCleanup(proc.kill)
            # SIGINT once the first progress line is out.
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                is_progress = (json.loads(line).get("event") == "progress" if mode == "json"
                               else line.startswith("progress "))
                if is_progress:
                    break
            if not lines:
                self.fail("watch printed nothing: %r" % proc.stderr.read())
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=30)
            self.assertEqual(proc.returncode, 130, err)
            lines += rest.splitlines()
            # The close handshake: the CLI's 1000 first, the server's answer.
            closes = sniff.wait_closes(2)
            self.assertEqual(closes[0], ("client", 1000), closes)
            self.assertEqual(closes[1][0], "server", closes)
            if mode == "json":
                end = json.loads(lines[-1])
                self.assertEqual(end["event"], "end")
                self.assertTrue(end["interrupted"])
                self.assertEqual(end["exit_code"], 130)
                self.assertEqual(end["state"], "running")
            else:
                self.assertRegex(lines[-1], r"^stopped watching job %s at [0-9.]+%% \(running; "
                                 r"\d+ previews received, 0 reconnects\): it goes on on the "
                                 r"server" % job_id)
                self.assertEqual(sum(1 for l in lines if l.startswith("stopped watching")), 1)
            # The job goes on.
            self.assertEqual(self.server.job(job_id)["state"], "running")

    def test_token_is_sent(self):
        # The server has no tokens yet: a token must not break anything.
        r = cli(self.server, "--token", "secret-token", "jobs")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_cancel_from_another_process(self):
        job_id = self.submit("--shape", "16,16,16", "--hz", "5", "--duration", "600")
        w = Watcher(self.server.port, job_id)
        try:
            w.wait_event(lambda e: e["event"] == "progress")
            r = cli(self.server, "cancel", job_id)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(w.wait(), 2, w.stderr)
            self.assertIn("cancelled", [e["event"] for e in w.events])
            self.assertEqual(w.events[-1]["state"], "cancelled")
        finally:
            w.kill()


# An exec engine that complains at length on stderr, then fails: the job's
# error message ends with the last ~600 bytes of it (docs/engines.md).
LOUD_ENGINE = ("loud=i=0; while [ $i -lt 40 ]; do echo \"complaint $i: the weights "
               "under /opt/models are missing\" >&2; i=$((i+1)); done; exit 3")


class CliEngineErrorTest(unittest.TestCase):
    def test_status_and_watch_print_a_long_job_error_whole(self):
        s = Server(("--engine", LOUD_ENGINE)).start()
        self.addCleanup(s.cleanup)
        r = cli(s, "--json", "submit", "--shape", "4,8,8", "--engine", "loud")
        self.assertEqual(r.returncode, 0, r.stderr)
        job_id = json.loads(r.stdout)["job_id"]
        s.wait_state(job_id, "failed")
        err = s.job(job_id)["errors"][0]
        self.assertEqual(err["code"], "engine_failed")
        message = err["message"]
        self.assertGreater(len(message), 256, "the engine's stderr makes it long")
        self.assertIn("complaint 39: the weights", message)
        # status: every byte of it, continuation lines under the value column.
        r = cli(s, "status", job_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        first = [i for i, l in enumerate(lines) if l.startswith("error      ")]
        self.assertEqual(len(first), 1, r.stdout)
        shown = [lines[first[0]][len("error      "):]]
        for l in lines[first[0] + 1:]:
            self.assertTrue(l.startswith("           "), r.stdout)
            shown.append(l[len("           "):])
        self.assertEqual("\n".join(shown), "engine_failed: " + message)
        # --json: the server's JSON, untouched.
        r = cli(s, "--json", "status", job_id)
        self.assertEqual(json.loads(r.stdout)["errors"][0]["message"], message)
        # watch of the failed job: exit 1, the whole message on its last line(s).
        r = cli(s, "watch", job_id)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("job %s failed: %s engine_failed" % (job_id, message), r.stdout)


class CliAuthTest(unittest.TestCase):
    def test_401_is_reported_clearly(self):
        s = Server(env={"CRYOMAMBA_TOKEN": "s3cret"}).start()
        try:
            r = cli(s, "jobs")
            self.assertEqual(r.returncode, 6, r.stderr)
            self.assertIn("401", r.stderr)
            self.assertIn("--token", r.stderr)
            r = cli(s, "--token", "s3cret", "--json", "submit", "--shape", "4",
                    "--duration", "0.2")
            self.assertEqual(r.returncode, 0, r.stderr)
            job_id = json.loads(r.stdout)["job_id"]
            r = cli(s, "--token", "wrong", "watch", job_id)
            self.assertEqual(r.returncode, 6, r.stderr)
            r = cli(s, "watch", job_id, env={"CRYOMAMBA_TOKEN": "s3cret"})
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            s.kill()
            s.cleanup()


class CliRestartTest(unittest.TestCase):
    def test_server_killed_and_restarted_while_watching(self):
        port = free_port()
        s1 = Server(("--port", str(port))).start()
        servers = [s1]
        w = None
        try:
            self.assertEqual(s1.port, port)
            job = s1.create_job({"volume": {"shape": [16, 16, 16]},
                                 "params": {"preview_hz": 5, "duration_s": 600}})
            job_id = job["job_id"]
            w = Watcher(port, job_id, "--max-retries", "30")
            w.wait_event(lambda e: e["event"] == "preview")
            s1.proc.send_signal(signal.SIGKILL)
            s1.proc.wait(10)
            w.wait_event(lambda e: e["event"] == "connection" and e["state"] == "reconnecting")
            time.sleep(1.0)
            s2 = Server(("--port", str(port)), state_dir=s1.state_dir).start()
            servers.append(s2)
            rc = w.wait()
            self.assertEqual(rc, 1, "events %r stderr %r" % (w.events[-8:], w.stderr))
            kinds = [e["event"] for e in w.events]
            self.assertIn("reconnecting", [e.get("state") for e in w.events
                                           if e["event"] == "connection"])
            reconnected = [e for e in w.events if e["event"] == "connected" and e["reconnect"]]
            self.assertEqual(len(reconnected), 1, kinds)
            errors = [e for e in w.events if e["event"] == "error" and e["kind"] == "job"]
            self.assertEqual(errors[0]["code"], "interrupted")
            self.assertEqual(w.events[-1]["reconnects"], 1)
            seqs = [e["seq"] for e in w.events if e["event"] in ("progress", "preview")]
            self.assertEqual(seqs, sorted(set(seqs)), "no duplicate or out-of-order event")
            self.assertIn("reconnecting", w.stderr)
        finally:
            if w is not None:
                w.kill()
            for s in servers:
                s.kill()
            s1.cleanup()


if __name__ == "__main__":
    main()
