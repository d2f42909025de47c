"""test_limits.py: every resource has a bound, hit here by a real slow,
stalled or careless client: total header and body deadlines (408), a write
deadline for responses nobody reads, the budget of bytes held for slow
WebSocket readers, the queued-job cap (429), retention and DELETE ?purge=1,
pagination, released previews of cancelled jobs, a FIFO as volume_path, and
start-up from a store holding records this server cannot read.
"""

import json
import os
import socket
import sqlite3
import time
import unittest

from harness import EV, SPEED_SCALE, RawHTTP, RawWS, Server, assert_error, main


def metric(srv, name):
    body = srv.get("/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s missing" % name)


class Deadlines(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--http-header-timeout", "1", "--http-body-timeout", "1",
                          "--http-write-timeout", "1", "--max-connections", "20",
                          "--ws-ping-interval", "60"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.cleanup()

    def trickle(self, data, every=0.3):
        """Sends `data` a byte at a time; returns the response bytes read
        once the server answers or closes."""
        c = RawHTTP(self.srv.port, timeout=10)
        self.addCleanup(c.close)
        c.sock.setblocking(True)
        start = time.monotonic()
        for b in data:
            try:
                c.sock.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(every)  # the attack: one byte every `every` seconds
            c.sock.settimeout(0.001)
            try:
                chunk = c.sock.recv(65536)
                c.buf += chunk
                if not chunk or b"\r\n\r\n" in c.buf:
                    break
            except (socket.timeout, BlockingIOError):
                pass
            except ConnectionResetError:
                break
            c.sock.settimeout(10)
        c.sock.settimeout(10)
        r = c.read_response()
        return r, time.monotonic() - start

    def test_headers_trickled_get_408_on_a_total_deadline(self):
        r, took = self.trickle(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
        assert_error(self, r, 408, "request_timeout", retryable=True)
        self.assertLess(took, 6.0, "the deadline must be total, not per byte")

    def test_body_trickled_gets_408(self):
        body = b'{"volume":{"shape":[8,8,8]}}'
        head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        c = RawHTTP(self.srv.port)
        self.addCleanup(c.close)
        c.send(head)
        start = time.monotonic()
        for b in body[:-1]:
            c.send_tolerant(bytes([b]))
            time.sleep(0.2)
            if time.monotonic() - start > 3:
                break
        r = c.read_response()
        assert_error(self, r, 408, "request_timeout")

    def test_slowloris_cannot_take_every_connection(self):
        socks = []
        for _ in range(25):
            s = socket.create_connection(("127.0.0.1", self.srv.port))
            s.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(s)
        self.addCleanup(lambda: [s.close() for s in socks])
        # Within the header deadline (plus a sweep) the half requests are
        # dropped and a real client is served again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = self.srv.get("/v1/healthz", timeout=2)
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.fail("the server stayed full of half-sent requests")

    def test_response_nobody_reads_is_dropped(self):
        job = self.srv.create_job({"volume": {"shape": [64, 256, 256]},
                                   "params": {"preview_hz": 5, "preview_scale": 1,
                                              "duration_s": 30}})
        self.addCleanup(self.srv.request, "DELETE", "/v1/jobs/%s" % job["job_id"])
        deadline = time.monotonic() + 10
        while self.srv.get("/v1/jobs/%s/preview" % job["job_id"]).status != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        c = RawHTTP(self.srv.port, rcvbuf=4096)
        self.addCleanup(c.close)
        full = len(self.srv.get("/v1/jobs/%s/preview" % job["job_id"]).body)
        c.send(b"GET /v1/jobs/%s/preview HTTP/1.1\r\nHost: x\r\n\r\n" % job["job_id"].encode())
        time.sleep(4.0)  # the attack: a reader that reads nothing for 4 s
        self.assertTrue(c.at_eof(timeout=8), "the connection must end")
        self.assertLess(len(c.buf), full, "a stalled response must be dropped, not finished")


class Budgets(unittest.TestCase):
    def test_stalled_subscribers_are_dropped_past_the_held_bytes_budget(self):
        srv = Server(["--max-held-bytes", str(8 << 20), "--ws-ping-interval", "60"]).start()
        self.addCleanup(srv.cleanup)
        job = srv.create_job({"volume": {"shape": [64, 256, 256]},
                              "params": {"preview_hz": 10, "preview_scale": 1,
                                         "duration_s": 60}})
        jid = job["job_id"]
        self.addCleanup(srv.request, "DELETE", "/v1/jobs/%s" % jid)
        stalled = []
        for _ in range(20):
            # Each subscribes after a new preview, so each stalls on a frame
            # of its own: without the budget they would pin 20 frames.
            seen = metric(srv, "cryomamba_previews_published_total")
            while metric(srv, "cryomamba_previews_published_total") == seen:
                time.sleep(0.02)
            ws = RawWS(srv.port, rcvbuf=4096)
            ws.handshake("/ws/jobs/%s" % jid)
            stalled.append(ws)  # and never read again
        self.addCleanup(lambda: [w.close() for w in stalled])
        deadline = time.monotonic() + 30
        while metric(srv, "cryomamba_slow_readers_dropped_total") < 5:
            self.assertLess(time.monotonic(), deadline, "stalled readers never dropped")
            time.sleep(0.2)
        held = metric(srv, "cryomamba_held_bytes")
        # The budget plus the few frames published before the shedding ran
        # (a ThreadSanitizer server sheds later: CI saw 4x the budget plus
        # 2 KB once, so two more frames' worth). Without the budget the 20
        # stalled readers pin 20 frames of 5.6 MB: 112 MB, far above 5x.
        slack = 3 if SPEED_SCALE == 1 else 5
        self.assertLessEqual(held, slack * (8 << 20), "held bytes far past the budget")
        # A healthy reader is unaffected.
        ws = RawWS(srv.port)
        self.addCleanup(ws.close)
        ws.handshake("/ws/jobs/%s" % jid)
        seen = set()
        while "preview" not in seen:
            op, data = ws.read_message()
            if op == 1:
                seen.add(json.loads(data)["type"])
        srv.assert_healthy()

    def test_queue_cap_answers_429(self):
        srv = Server(["--max-running", "1", "--max-queued", "3"]).start()
        self.addCleanup(srv.cleanup)
        body = {"volume": {"shape": [8, 8, 8]}, "params": {"duration_s": 3600}}
        ids = [srv.create_job(body)["job_id"]]  # runs
        srv.wait_state(ids[0], "running")
        ids += [srv.create_job(body)["job_id"] for _ in range(3)]  # queue
        r = srv.request("POST", "/v1/jobs", body=body)
        assert_error(self, r, 429, "queue_full", retryable=True)
        self.assertEqual(r.header("Retry-After"), "5")
        srv.request("DELETE", "/v1/jobs/%s" % ids[1])
        self.assertEqual(srv.request("POST", "/v1/jobs", body=body).status, 201)
        srv.assert_healthy()


class JobLifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--max-running", "4", "--preview-cache-bytes", "0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.cleanup()

    def test_pagination_and_state_filter(self):
        srv = self.srv
        made = [srv.create_job({"volume": {"shape": [8, 8, 8]},
                                "params": {"duration_s": 3600}})["job_id"] for _ in range(25)]
        for jid in made[:5]:
            srv.request("DELETE", "/v1/jobs/%s" % jid)
        seen, cursor, pages = [], None, 0
        while True:
            r = srv.get("/v1/jobs?limit=7" + ("&cursor=%s" % cursor if cursor else ""))
            self.assertEqual(r.status, 200)
            self.assertLessEqual(r.json["count"], 7)
            seen += [j["job_id"] for j in r.json["jobs"]]
            pages += 1
            cursor = r.json["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(len(seen), len(set(seen)), "a job listed twice")
        self.assertTrue(set(made) <= set(seen))
        self.assertEqual(len(seen), r.json["total"])
        created = [srv.job(j)["created_at"] for j in seen]
        self.assertEqual(created, sorted(created, reverse=True), "newest first")
        cancelled = srv.get("/v1/jobs?state=cancelled&limit=1000").json["jobs"]
        self.assertTrue({j["job_id"] for j in cancelled} >= set(made[:5]))
        self.assertTrue(all(j["state"] == "cancelled" for j in cancelled))
        assert_error(self, srv.get("/v1/jobs?limit=0"), 400, "invalid_field")
        assert_error(self, srv.get("/v1/jobs?state=bogus"), 400, "invalid_field")
        assert_error(self, srv.get("/v1/jobs?cursor=%s" % ("0" * 36)), 400, "invalid_cursor")
        for jid in made[5:]:
            srv.request("DELETE", "/v1/jobs/%s" % jid)

    def test_purge_deletes_a_finished_job_and_its_artifact(self):
        srv = self.srv
        job = srv.create_job({"volume": {"shape": [8, 16, 16]},
                              "params": {"duration_s": 0.2, "preview_hz": 10}})
        jid = job["job_id"]
        srv.wait_state(jid, "completed")
        art = os.path.join(srv.state_dir, "artifacts", "%s-mask.mrc" % jid)
        self.assertTrue(os.path.exists(art))
        assert_error(self, srv.request("DELETE", "/v1/jobs/%s" % jid), 409, "job_finished")
        r = srv.request("DELETE", "/v1/jobs/%s?purge=1" % jid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"job_id": jid, "status": "deleted"})
        assert_error(self, srv.get("/v1/jobs/%s" % jid), 404, "job_not_found")
        deadline = time.monotonic() + 5
        while os.path.exists(art):
            self.assertLess(time.monotonic(), deadline, "artifact not removed")
            time.sleep(0.05)
        running = srv.create_job({"volume": {"shape": [8, 8, 8]}, "params": {"duration_s": 3600}})
        assert_error(self, srv.request("DELETE", "/v1/jobs/%s?purge=1" % running["job_id"]),
                     409, "job_active")
        srv.request("DELETE", "/v1/jobs/%s" % running["job_id"])

    def test_cancelled_previews_leave_memory(self):
        srv = self.srv
        job = srv.create_job({"volume": {"shape": [16, 64, 64]},
                              "params": {"duration_s": 60, "preview_hz": 10}})
        jid = job["job_id"]
        deadline = time.monotonic() + 10
        while srv.get("/v1/jobs/%s/preview" % jid).status != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        srv.request("DELETE", "/v1/jobs/%s" % jid)
        deadline = time.monotonic() + 5
        while True:
            r = srv.get("/v1/jobs/%s/preview" % jid)
            if r.status == 404:
                break
            self.assertLess(time.monotonic(), deadline, "the cancelled preview stayed")
            time.sleep(0.1)
        assert_error(self, r, 404, "preview_not_available", retryable=False)


class Retention(unittest.TestCase):
    def test_oldest_finished_jobs_go_beyond_the_count(self):
        srv = Server(["--max-running", "8", "--retention-max-jobs", "3"]).start()
        self.addCleanup(srv.cleanup)
        ids = []
        for _ in range(7):
            ids.append(srv.create_job({"volume": {"shape": [8, 8, 8]},
                                       "params": {"duration_s": 0.1, "preview_hz": 10}})["job_id"])
        deadline = time.monotonic() + 20
        while True:
            listed = srv.get("/v1/jobs?limit=1000").json
            if listed["total"] == 3:
                break
            self.assertLess(time.monotonic(), deadline, "retention never applied: %r"
                            % listed["total"])
            time.sleep(0.1)
        kept = {j["job_id"] for j in listed["jobs"]}
        self.assertEqual(kept, set(ids[-3:]), "the newest must stay")
        self.assertGreaterEqual(metric(srv, "cryomamba_jobs_retired_total"), 4)


class FifoVolume(unittest.TestCase):
    def test_fifo_volume_path_never_blocks_the_loop(self):
        srv = Server([]).start()
        self.addCleanup(srv.cleanup)
        os.mkfifo(os.path.join(srv.data_root, "pipe.mrc"))
        start = time.monotonic()
        r = srv.request("POST", "/v1/jobs", body={"volume_path": "pipe.mrc"}, timeout=5)
        assert_error(self, r, 400, "invalid_volume_path")
        self.assertIn("not a regular file", r.json["error"]["message"])
        self.assertLess(time.monotonic() - start, 3)
        os.symlink("/etc/passwd", os.path.join(srv.data_root, "escape.mrc"))
        r = srv.request("POST", "/v1/jobs", body={"volume_path": "escape.mrc"})
        assert_error(self, r, 400, "invalid_volume_path")
        self.assertIn("outside the data root", r.json["error"]["message"])
        srv.assert_healthy()


class CorruptStore(unittest.TestCase):
    def test_unreadable_records_are_skipped_and_the_server_serves(self):
        srv = Server([]).start()
        self.addCleanup(srv.cleanup)
        good = srv.create_job({"volume": {"shape": [8, 8, 8]},
                               "params": {"duration_s": 0.1, "preview_hz": 10}})["job_id"]
        srv.wait_state(good, "completed")
        rec = json.loads(json.dumps(srv.job(good)))
        srv.stop()
        db = sqlite3.connect(os.path.join(srv.state_dir, "jobs.db"))
        bad = []

        def put(jid, record):
            db.execute("INSERT INTO jobs(id, record) VALUES(?, ?)", (jid, record))
            bad.append(jid)

        def variant(**changes):
            r = dict(rec, internal={"seq": 3})
            r.update(changes)
            return r

        put("00000000-0000-4000-8000-000000000001",
            json.dumps(variant(job_id="00000000-0000-4000-8000-000000000001",
                               state="exploded")))
        put("00000000-0000-4000-8000-000000000002",
            json.dumps(variant(job_id="00000000-0000-4000-8000-000000000002",
                               volume={"shape": [0, -1, "x"]})))
        put("00000000-0000-4000-8000-000000000003", '{"job_id": "00000000-0000-4000-8')
        put("00000000-0000-4000-8000-000000000004", "[1, 2, 3]")
        put("00000000-0000-4000-8000-000000000005",
            json.dumps(variant(job_id="00000000-0000-4000-8000-000000000005",
                               state="running", params={"preview_hz": "fast"})))
        put("00000000-0000-4000-8000-000000000006",
            json.dumps(variant(job_id="00000000-0000-4000-8000-000000000006",
                               state="running", from_the_future={"x": 1})))
        db.commit()
        db.close()
        srv2 = Server([], state_dir=srv.state_dir).start()
        self.addCleanup(srv2.cleanup)
        self.assertEqual(srv2.job(good)["state"], "completed")
        for jid in bad[:5]:
            assert_error(self, srv2.get("/v1/jobs/%s" % jid), 404, "job_not_found")
        # Unknown fields are ignored: that record restores (and, having been
        # running, is failed as interrupted).
        self.assertEqual(srv2.job(bad[5])["state"], "failed")
        self.assertIn("record_skipped", srv2.stderr_tail(20000))
        srv2.assert_healthy()


class Orphans(unittest.TestCase):
    def test_start_up_removes_temporary_artifacts_left_by_a_crash(self):
        srv = Server([])
        self.addCleanup(srv.cleanup)
        arts = os.path.join(srv.state_dir, "artifacts")
        os.makedirs(arts, exist_ok=True)
        orphan = os.path.join(arts, "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b-mask.mrc.tmp")
        kept = os.path.join(arts, "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b-mask.mrc")
        for path in (orphan, kept):
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
        srv.start()
        self.assertFalse(os.path.exists(orphan), "an orphaned .tmp survived start-up")
        self.assertTrue(os.path.exists(kept))
        self.assertIn("orphan_removed", srv.stderr_tail(20000))


if __name__ == "__main__":
    main()
