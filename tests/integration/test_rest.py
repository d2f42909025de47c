#!/usr/bin/python3
"""REST API of protocol v1 (docs/protocol.md §2-§4): health, server info,
job creation with every kind of body, get/list, cancel (queued and running),
the preview endpoint, completion and the mask.mrc artifact, metrics,
keep-alive."""

import asyncio
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from harness import (EV, TS_RE, UUID4_RE, RawHTTP, RawWS, ServerTestCase, accept_for, ws_key,  # noqa: E402
                     assert_error, check_envelope, check_job_object, decode_preview,
                     label_set, main, new_uuid, read_mrc, recv_msg, recv_type, recv_until, ws_connect)

DEFAULT_PARAMS = {"preview_hz": 1.0, "preview_scale": 1, "duration_s": 30.0, "seed": 0,
                  "pattern": "random"}


class RestTest(ServerTestCase):
    SERVER_ARGS = ("--max-running", "4", "--max-connections", "200",
                   "--max-subscribers-per-job", "50", "--max-body-bytes", "300000")

    # -- health, info, metrics --------------------------------------------
    def test_healthz(self):
        r = self.server.get("/v1/healthz")
        self.assertEqual(r.status, 200)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"))
        self.assertEqual(r.json, {"status": "ok"})
        self.assertEqual(int(r.header("Content-Length")), len(r.body))

    def test_server_info(self):
        r = self.server.get("/v1/server/info")
        self.assertEqual(r.status, 200)
        info = r.json
        self.assertEqual(info["name"], "cryomambad")
        self.assertEqual(info["version"], "0.1.0")
        self.assertEqual(info["protocol_version"], 1)
        for cap in ("previews", "cancel", "artifacts", "patterns:random,blobs"):
            self.assertIn(cap, info["capabilities"])
        lim = info["limits"]
        self.assertEqual(lim["max_running"], 4)
        self.assertEqual(lim["max_connections"], 200)
        self.assertEqual(lim["max_subscribers_per_job"], 50)
        self.assertEqual(lim["max_body_bytes"], 300000)
        self.assertEqual(lim["max_ws_message_bytes"], 65536)
        self.assertEqual(lim["max_dim"], 4096)
        self.assertEqual(lim["max_scale"], 16)
        self.assertEqual([float(x) for x in lim["preview_hz"]], [0.1, 30.0])

    def test_metrics(self):
        r = self.server.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/plain"),
                        r.header("Content-Type"))
        text = r.body.decode("utf-8")
        samples = [l for l in text.splitlines() if l and not l.startswith("#")]
        self.assertTrue(samples, "no metric samples")
        line_re = re.compile(r"^(cryomamba_[a-zA-Z0-9_]+)(\{[^}]*\})? [-+0-9.eEinfNa]+( \d+)?$")
        for l in samples:
            self.assertRegex(l, line_re)
        for l in text.splitlines():
            if l.startswith("# TYPE") or l.startswith("# HELP"):
                self.assertTrue(l.split()[2].startswith("cryomamba_"), l)

    # -- create -------------------------------------------------------------
    def _check_defaults(self, job):
        check_job_object(self, job)
        self.assertEqual(job["status"], "created")
        self.assertIn(job["state"], ("queued", "running"))
        self.assertEqual(job["volume"]["shape"], [64, 64, 64])
        self.assertEqual([float(v) for v in job["volume"]["voxel_size"]], [1.0, 1.0, 1.0])
        self.assertIsNone(job["volume"]["path"])
        self.assertEqual(job["preview_shape"], [64, 64, 64])
        self.assertEqual(job["params"], DEFAULT_PARAMS)
        self.assertEqual(job["artifacts"], [])
        self.assertIsNone(job["stats"])
        self.assertEqual(job["errors"], [])
        self.assertIsNone(job["finished_at"])
        self.addCleanup(self.server.request, "DELETE", "/v1/jobs/%s" % job["job_id"])

    def test_create_no_body(self):
        r = self.server.request("POST", "/v1/jobs")  # Content-Length: 0
        self.assertEqual(r.status, 201, r)
        self._check_defaults(r.json)

    def test_create_no_body_no_content_length(self):
        c = RawHTTP(self.server.port)
        try:
            c.send(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r = c.read_response()
        finally:
            c.close()
        self.assertEqual(r.status, 201, r)
        self._check_defaults(r.json)

    def test_create_empty_object(self):
        r = self.server.request("POST", "/v1/jobs", body={})
        self.assertEqual(r.status, 201, r)
        self._check_defaults(r.json)
        self.assertEqual(r.header("Content-Type").split(";")[0], "application/json")

    def test_create_full_body(self):
        body = {"volume": {"shape": [33, 64, 65], "voxel_size": [2.0, 1.5, 1.25]},
                "params": {"preview_hz": 5, "preview_scale": 2, "duration_s": 10,
                           "seed": 7, "pattern": "blobs"}}
        job = self.make_job(body)
        check_job_object(self, job)
        self.assertEqual(job["status"], "created")
        self.assertEqual(job["volume"]["shape"], [33, 64, 65])
        self.assertEqual(job["volume"]["voxel_size"], [2.0, 1.5, 1.25])
        self.assertEqual(job["preview_shape"], [17, 32, 33])
        self.assertEqual(job["params"], {"preview_hz": 5.0, "preview_scale": 2,
                                         "duration_s": 10.0, "seed": 7, "pattern": "blobs"})
        got = self.server.job(job["job_id"])
        check_job_object(self, got)
        self.assertEqual(got["params"], job["params"])
        self.assertEqual(got["volume"], job["volume"])
        self.assertEqual(got["created_at"], job["created_at"])

    def test_create_params_top_level_and_scalar_voxel_size(self):
        body = {"volume": {"shape": [8, 9, 10], "voxel_size": 2.5},
                "preview_hz": 2, "preview_scale": 3, "duration_s": 0.5, "seed": 42,
                "pattern": "blobs"}
        job = self.make_job(body)
        self.assertEqual(job["volume"]["voxel_size"], [2.5, 2.5, 2.5])
        self.assertEqual(job["preview_shape"], [3, 3, 4])
        self.assertEqual(job["params"], {"preview_hz": 2.0, "preview_scale": 3,
                                         "duration_s": 0.5, "seed": 42, "pattern": "blobs"})

    def test_null_params_take_defaults(self):
        job = self.make_job({"volume": {"shape": [4, 4, 4]},
                             "params": {"preview_hz": None, "seed": None, "pattern": None}})
        self.assertEqual(job["params"]["preview_hz"], 1.0)
        self.assertEqual(job["params"]["seed"], 0)
        self.assertEqual(job["params"]["pattern"], "random")

    def test_create_bounds_accepted(self):
        for params in ({"preview_hz": 0.1}, {"preview_hz": 30}, {"preview_scale": 16},
                       {"duration_s": 86400}, {"seed": 2 ** 40}):
            job = self.make_job({"volume": {"shape": [4, 4, 4]}, "params": params})
            for k, v in params.items():
                self.assertEqual(job["params"][k], v, (k, job["params"]))
        job = self.make_job({"volume": {"shape": [1, 1, 4096]}, "params": {"duration_s": 0}})
        self.assertEqual(job["volume"]["shape"], [1, 1, 4096])

    def test_ids_unique_uuid4(self):
        ids = set()
        for _ in range(5):
            job = self.make_job({"volume": {"shape": [2, 2, 2]}, "params": {"duration_s": 0}})
            self.assertRegex(job["job_id"], UUID4_RE)
            ids.add(job["job_id"])
        self.assertEqual(len(ids), 5)

    # -- get / list ---------------------------------------------------------
    def test_get_unknown_and_malformed(self):
        assert_error(self, self.server.get("/v1/jobs/%s" % new_uuid()), 404, "job_not_found",
                     retryable=False)
        for bad in ("not-a-uuid", "12345", "0f8b6c7e6a434c1e9a8e2d3b5f1c9e10",
                    "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e1g", "%00"):
            assert_error(self, self.server.get("/v1/jobs/%s" % bad), 400, "invalid_job_id")

    def test_list_newest_first(self):
        mine = [self.make_job({"volume": {"shape": [2, 2, 2]}, "params": {"duration_s": 0}})
                ["job_id"] for _ in range(3)]
        r = self.server.get("/v1/jobs")
        self.assertEqual(r.status, 200)
        lst = r.json
        self.assertEqual(lst["count"], len(lst["jobs"]))
        ids = [j["job_id"] for j in lst["jobs"]]
        for j in lst["jobs"]:
            check_job_object(self, j)
        for i in mine:
            self.assertIn(i, ids)
        pos = [ids.index(i) for i in mine]
        self.assertEqual(pos, sorted(pos, reverse=True), "list is not newest first")
        created = [j["created_at"] for j in lst["jobs"]]
        self.assertEqual(created, sorted(created, reverse=True))

    # -- cancel -------------------------------------------------------------
    async def test_cancel_running_job(self):
        job = self.make_job({"volume": {"shape": [16, 16, 16]},
                             "params": {"preview_hz": 5, "duration_s": 300}})
        jid = job["job_id"]
        self.server.wait_state(jid, "running")
        ws = await ws_connect(self.server, jid)
        try:
            first, _ = await recv_msg(ws)
            self.assertEqual(first["type"], "connected")
            await recv_type(ws, "preview", timeout=EV)
            r = await asyncio.to_thread(self.server.request, "DELETE", "/v1/jobs/%s" % jid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json, {"job_id": jid, "status": "cancelled", "state": "cancelled"})
            msg = await recv_type(ws, "cancelled", timeout=EV)
            check_envelope(self, msg, jid)
            self.assertEqual(msg["data"]["state"], "cancelled")
            self.assertTrue(0.0 <= msg["data"]["progress"] <= 1.0)
            # No preview (or progress) after the cancel, over more than one period.
            late = []
            try:
                while True:
                    m, _ = await recv_msg(ws, timeout=1.0)
                    late.append(m["type"])
            except asyncio.TimeoutError:
                pass
            self.assertNotIn("preview", late)
            self.assertNotIn("progress", late)
            self.assertTrue(ws.open, "server closed the subscription after cancel")
        finally:
            await ws.close()
        got = self.server.job(jid)
        self.assertEqual(got["state"], "cancelled")
        self.assertRegex(got["finished_at"], TS_RE)
        self.assertEqual(got["artifacts"], [])
        assert_error(self, self.server.request("DELETE", "/v1/jobs/%s" % jid), 409,
                     "job_finished")
        assert_error(self, self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % jid), 409,
                     "job_not_completed")

    def test_cancel_unknown_and_malformed(self):
        assert_error(self, self.server.request("DELETE", "/v1/jobs/%s" % new_uuid()), 404,
                     "job_not_found")
        assert_error(self, self.server.request("DELETE", "/v1/jobs/xyz"), 400, "invalid_job_id")

    # -- completion and artifact -------------------------------------------
    async def _run_to_completion(self, body):
        """Creates a job, subscribes, collects every message until completed;
        returns (job, messages [(msg, raw)])."""
        job = self.make_job(body)
        jid = job["job_id"]
        ws = await ws_connect(self.server, jid)
        msgs = []
        try:
            await recv_until(ws, lambda m: m["type"] in ("completed", "error", "cancelled"),
                             timeout=60, collect=msgs)
        finally:
            await ws.close()
        self.assertEqual(msgs[0][0]["type"], "connected")
        self.assertEqual(msgs[-1][0]["type"], "completed", [m[0]["type"] for m in msgs])
        return job, msgs

    def _check_artifact(self, job, msgs, pattern, scale):
        jid = job["job_id"]
        shape = job["volume"]["shape"]
        vs = job["volume"]["voxel_size"]
        done = self.server.wait_state(jid, "completed", timeout=10)
        check_job_object(self, done)
        self.assertEqual(done["progress"], 1.0)
        self.assertRegex(done["finished_at"], TS_RE)
        self.assertRegex(done["started_at"], TS_RE)
        self.assertEqual(done["errors"], [])
        url = "/v1/jobs/%s/artifacts/mask.mrc" % jid
        nbytes = 1024 + shape[0] * shape[1] * shape[2]
        self.assertEqual(done["artifacts"], [{"name": "mask.mrc", "url": url, "bytes": nbytes}])
        completed = msgs[-1][0]
        self.assertEqual(completed["data"]["state"], "completed")
        self.assertEqual(completed["data"]["artifacts"], done["artifacts"])
        self.assertEqual(completed["data"]["stats"], done["stats"])

        r = self.server.get(url)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        self.assertEqual(len(r.body), nbytes)
        self.assertEqual(r.body[208:212], b"MAP ")
        hdr, data, voxel = read_mrc(r.body)
        self.assertEqual(int(hdr.mode), 0)
        self.assertEqual(list(data.shape), shape)
        self.assertEqual(data.dtype.itemsize, 1)
        for got, want in zip(voxel, vs):
            self.assertAlmostEqual(got, want, places=3)
        mask = data.view(np.uint8)
        allowed = {0, 1} if pattern == "random" else {0, 1, 2}
        self.assertLessEqual(label_set(mask), allowed)

        stats = done["stats"]
        self.assertEqual(stats["voxels"], shape[0] * shape[1] * shape[2])
        counts = np.bincount(mask.ravel(), minlength=3)
        want_counts = {str(l): int(counts[l]) for l in sorted(allowed)}
        self.assertEqual(stats["label_counts"], want_counts)

        previews = [e[0] for e in msgs if e[0]["type"] == "preview"]
        self.assertTrue(previews, "no preview streamed before completed")
        last, _ = decode_preview(self, previews[-1], shape, scale)
        self.assertLess(previews[-1]["seq"], completed["seq"])
        np.testing.assert_array_equal(
            mask[::scale, ::scale, ::scale], last,
            "the artifact downsampled by preview_scale differs from the final preview")
        # the REST preview is that same final preview
        rp = self.server.get("/v1/jobs/%s/preview" % jid)
        self.assertEqual(rp.status, 200)
        self.assertEqual(rp.json, previews[-1])
        return mask

    async def test_complete_blobs_artifact(self):
        body = {"volume": {"shape": [20, 40, 50], "voxel_size": [2.0, 3.0, 4.0]},
                "params": {"preview_hz": 5, "duration_s": 2, "seed": 3, "pattern": "blobs"}}
        job, msgs = await self._run_to_completion(body)
        mask = self._check_artifact(job, msgs, "blobs", 1)
        self.assertGreater(int(np.count_nonzero(mask)), 0, "final blobs mask is empty")
        # a non-final random check on previews: the streamed progress ends at 1
        prog = [e[0]["data"]["progress"] for e in msgs if e[0]["type"] == "progress"]
        self.assertTrue(prog and prog[-1] == 1.0, prog[-3:])

    async def test_complete_blobs_artifact_scale2(self):
        body = {"volume": {"shape": [33, 64, 65], "voxel_size": 1.5},
                "params": {"preview_hz": 5, "preview_scale": 2, "duration_s": 1.5, "seed": 11,
                           "pattern": "blobs"}}
        job, msgs = await self._run_to_completion(body)
        self._check_artifact(job, msgs, "blobs", 2)

    async def test_complete_random_artifact(self):
        body = {"volume": {"shape": [16, 24, 32]},
                "params": {"preview_hz": 5, "duration_s": 1, "seed": 5, "pattern": "random"}}
        job, msgs = await self._run_to_completion(body)
        mask = self._check_artifact(job, msgs, "random", 1)
        self.assertEqual(label_set(mask), {0, 1})

    async def test_duration_zero_completes(self):
        body = {"volume": {"shape": [8, 8, 8]}, "params": {"duration_s": 0, "pattern": "blobs"}}
        job, msgs = await self._run_to_completion(body)
        self._check_artifact(job, msgs, "blobs", 1)

    def test_artifact_errors(self):
        job = self.make_job({"volume": {"shape": [8, 8, 8]}, "params": {"duration_s": 300}})
        jid = job["job_id"]
        assert_error(self, self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % jid), 409,
                     "job_not_completed", retryable=True)
        assert_error(self, self.server.get("/v1/jobs/%s/artifacts/other.mrc" % jid), 404,
                     "artifact_not_found")
        assert_error(self, self.server.get("/v1/jobs/%s/artifacts/mask.mrc" % new_uuid()), 404,
                     "job_not_found")

    # -- preview endpoint -----------------------------------------------------
    async def test_preview_endpoint_matches_stream(self):
        job = self.make_job({"volume": {"shape": [10, 12, 14]},
                             "params": {"preview_hz": 0.2, "duration_s": 300, "seed": 1}})
        jid = job["job_id"]
        ws = await ws_connect(self.server, jid)
        try:
            conn, _ = await recv_msg(ws)
            self.assertEqual(conn["type"], "connected")
            if conn["data"]["last_seq"] == 0:
                r = await asyncio.to_thread(self.server.get, "/v1/jobs/%s/preview" % jid)
                if r.status != 200:  # the first preview may be racing us
                    assert_error(self, r, 404, "preview_not_ready", retryable=True)
            got = []
            await recv_type(ws, "preview", timeout=30, collect=got)
            raw = got[-1][1]
            r = await asyncio.to_thread(self.server.get, "/v1/jobs/%s/preview" % jid)
        finally:
            await ws.close()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"))
        self.assertEqual(r.body.decode("utf-8"), raw,
                         "REST preview is not byte-identical to the streamed preview")

    # -- HTTP behaviour ---------------------------------------------------------
    def test_keep_alive_reuses_connection(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=EV)
        try:
            for path in ("/v1/healthz", "/v1/server/info", "/v1/jobs", "/v1/healthz"):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
            sock_before = conn.sock
            conn.request("GET", "/v1/jobs/%s" % new_uuid())
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 404)
            conn.request("GET", "/v1/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertIs(conn.sock, sock_before, "server closed a keep-alive connection")
        finally:
            conn.close()

    def test_connection_close_honoured(self):
        c = RawHTTP(self.server.port)
        try:
            c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(c.at_eof(5.0), "server kept the connection open after "
                                           "Connection: close")
        finally:
            c.close()

    def test_query_strings_are_ignored(self):
        r = self.server.get("/v1/healthz?probe=1")
        self.assertEqual(r.status, 200)
        r = self.server.get("/v1/jobs?limit=5&x=%20y")
        self.assertEqual(r.status, 200)
        self.assertIn("jobs", r.json)

    async def test_upgrade_header_variants(self):
        job = self.make_job({"volume": {"shape": [4, 4, 4]}, "params": {"duration_s": 300}})
        path = "/ws/jobs/%s?client=test" % job["job_id"]
        for upgrade, connection in (("websocket", "keep-alive, Upgrade"),   # browsers
                                    ("WebSocket", "upgrade"),
                                    ("websocket", "Upgrade, HTTP2-Settings")):
            with self.subTest(upgrade=upgrade, connection=connection):
                c = RawWS(self.server.port)
                try:
                    key = ws_key()
                    c.send(("GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: %s\r\n"
                            "connection: %s\r\nsec-websocket-key: %s\r\n"
                            "sec-websocket-version: 13\r\nOrigin: http://example\r\n\r\n"
                            % (path, upgrade, connection, key)).encode())
                    r = c.read_response()
                    self.assertEqual(r.status, 101, r)
                    self.assertEqual(r.header("Sec-WebSocket-Accept"), accept_for(key))
                    self.assertEqual((r.header("Upgrade") or "").lower(), "websocket")
                    self.assertIn("upgrade", (r.header("Connection") or "").lower())
                    op, data = c.read_message()
                    self.assertEqual(op, 0x1)
                    self.assertEqual(json.loads(data)["type"], "connected")
                finally:
                    c.close()

    # -- HEAD ---------------------------------------------------------------------
    def _completed_job(self, shape):
        job = self.make_job({"volume": {"shape": shape}, "params": {"duration_s": 0}})
        return self.server.wait_state(job["job_id"], "completed", timeout=30)

    def test_head_answers_like_get_without_body(self):
        jid = self._completed_job([6, 7, 8])["job_id"]
        self.server.get("/v1/jobs/%s/preview" % jid)  # rendered again if it must be
        paths = ["/v1/healthz", "/v1/server/info", "/v1/jobs/%s" % jid,
                 "/v1/jobs/%s/preview" % jid, "/v1/jobs/%s/artifacts/mask.mrc" % jid,
                 "/v1/jobs/%s/artifacts/other.mrc" % jid, "/v1/jobs/nope",
                 "/v1/jobs/%s" % new_uuid(), "/v1/nope"]
        c = RawHTTP(self.server.port)
        try:
            for path in paths:
                with self.subTest(path=path):
                    # pipelined: a body after the HEAD answer would be read as
                    # the GET's status line
                    c.send(b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % (path.encode(), path.encode()))
                    h = c.read_response(no_body=True)
                    g = c.read_response()
                    self.assertEqual(h.status, g.status)
                    for name in ("Content-Type", "Content-Length", "Connection", "Allow"):
                        self.assertEqual(h.header(name), g.header(name), name)
                    self.assertEqual(int(h.header("Content-Length")), len(g.body))
            self.assertEqual(bytes(c.buf), b"", "bytes after the last response")
        finally:
            c.close()

    def test_head_of_artifact_sends_no_file_and_keeps_alive(self):
        shape = [64, 64, 64]
        jid = self._completed_job(shape)["job_id"]
        c = RawHTTP(self.server.port)
        try:
            c.send(b"HEAD /v1/jobs/%s/artifacts/mask.mrc HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % jid.encode())
            h = c.read_response(no_body=True)
            self.assertEqual(h.status, 200)
            self.assertEqual(h.header("Content-Type"), "application/octet-stream")
            self.assertEqual(int(h.header("Content-Length")), 1024 + 64 ** 3)
            self.assertEqual(h.header("Connection"), "keep-alive")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json, {"status": "ok"})
            self.assertTrue(c.at_eof(5.0))
            self.assertEqual(bytes(c.buf), b"", "file bytes after the HEAD answer")
        finally:
            c.close()

    def test_head_is_allowed_wherever_get_is(self):
        r = self.server.request("HEAD", "/v1/jobs")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        for method, path in (("PUT", "/v1/jobs"), ("POST", "/v1/healthz"),
                             ("PATCH", "/v1/jobs/%s" % new_uuid())):
            with self.subTest(method=method, path=path):
                r = self.server.request(method, path)
                assert_error(self, r, 405, "method_not_allowed")
                allow = {m.strip() for m in r.header("Allow").split(",")}
                self.assertIn("GET", allow)
                self.assertIn("HEAD", allow)

    def test_chunked_request_body(self):
        body = json.dumps({"volume": {"shape": [5, 6, 7]}, "params": {"duration_s": 0}}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 10]), body[i:i + 10])
                          for i in range(0, len(body), 10)) + b"0\r\n\r\n"
        c = RawHTTP(self.server.port)
        try:
            c.send(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
            r = c.read_response()
        finally:
            c.close()
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["volume"]["shape"], [5, 6, 7])


class QueueTest(ServerTestCase):
    """--max-running 1: queued jobs, cancelling them, late joiners before the
    start, the queued -> running state message."""
    SERVER_ARGS = ("--max-running", "1")

    async def test_queue_cancel_and_start(self):
        a = self.make_job({"volume": {"shape": [8, 8, 8]},
                           "params": {"preview_hz": 5, "duration_s": 300}})
        self.server.wait_state(a["job_id"], "running")
        b = self.make_job({"volume": {"shape": [8, 8, 8]}, "params": {"duration_s": 300}})
        c = self.make_job({"volume": {"shape": [8, 8, 8]},
                           "params": {"preview_hz": 5, "duration_s": 300}})
        self.assertEqual(b["state"], "queued")
        self.assertEqual(self.server.job(b["job_id"])["state"], "queued")
        self.assertIsNone(self.server.job(b["job_id"])["started_at"])
        assert_error(self, self.server.get("/v1/jobs/%s/preview" % b["job_id"]), 404,
                     "preview_not_ready", retryable=True)

        # late joiner before the start
        wb = await ws_connect(self.server, b["job_id"])
        wc = await ws_connect(self.server, c["job_id"])
        try:
            conn, _ = await recv_msg(wb)
            check_envelope(self, conn, b["job_id"])
            self.assertEqual(conn["type"], "connected")
            d = conn["data"]
            self.assertEqual(d["state"], "queued")
            self.assertEqual(d["progress"], 0)
            self.assertEqual(d["last_seq"], 0)
            self.assertEqual(d["volume"]["shape"], [8, 8, 8])
            self.assertEqual(d["preview_shape"], [8, 8, 8])
            self.assertEqual(d["params"]["duration_s"], 300)
            connc, _ = await recv_msg(wc)
            self.assertEqual(connc["data"]["state"], "queued")

            # cancel the queued job b
            r = await asyncio.to_thread(self.server.request, "DELETE",
                                        "/v1/jobs/%s" % b["job_id"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["state"], "cancelled")
            msg = await recv_type(wb, "cancelled")
            self.assertGreaterEqual(msg["seq"], 1)
            self.assertEqual(self.server.job(a["job_id"])["state"], "running")
            self.assertEqual(self.server.job(c["job_id"])["state"], "queued")

            # cancel the running job a: c starts and its subscriber sees the state change
            r = await asyncio.to_thread(self.server.request, "DELETE",
                                        "/v1/jobs/%s" % a["job_id"])
            self.assertEqual(r.status, 200)
            st = await recv_type(wc, "state", timeout=EV)
            self.assertEqual(st["data"], {"state": "running", "previous": "queued"})
            self.assertGreaterEqual(st["seq"], 1)
            pv = await recv_type(wc, "preview", timeout=EV)
            self.assertGreater(pv["seq"], st["seq"])
            got = self.server.job(c["job_id"])
            self.assertEqual(got["state"], "running")
            self.assertRegex(got["started_at"], TS_RE)
        finally:
            await wb.close()
            await wc.close()


if __name__ == "__main__":
    main()
