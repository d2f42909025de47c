#!/usr/bin/python3
"""Bad input (docs/protocol.md §4, §5.1, §5.6, §6): malformed HTTP, bad JSON,
every invalid field, unknown routes and methods, oversized bodies and
headers, invalid and unknown job ids, broken WebSocket handshakes and
frames, bad client messages, pipelining, volume paths.

Every test runs next to a "canary": a running job with a live subscriber.
After each test the server must still answer /v1/healthz and the canary must
still stream previews, so no bad input may harm anything else."""

import asyncio
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from harness import (EV, RSS_SCALE, RawHTTP, RawWS, ServerTestCase, assert_error,  # noqa: E402
                     check_envelope, main, new_uuid, recv_msg,
                     recv_type, upgrade_request, wait_closed_code, ws_connect)


class BadInputTest(ServerTestCase):
    SERVER_ARGS = ("--max-running", "4", "--max-body-bytes", "100000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.canary = cls.server.create_job({"volume": {"shape": [16, 16, 16]},
                                            "params": {"preview_hz": 10, "duration_s": 3600}})
        cls.server.wait_state(cls.canary["job_id"], "running")

    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.canary_ws = await ws_connect(self.server, self.canary["job_id"])
        m, _ = await recv_msg(self.canary_ws)
        self.assertEqual(m["type"], "connected")

    async def asyncTearDown(self):
        try:
            # drain what queued up during the test, then expect a fresh preview
            n = 0
            while True:
                try:
                    m, _ = await recv_msg(self.canary_ws, timeout=0.05)
                    n += 1
                except asyncio.TimeoutError:
                    break
            m = await recv_type(self.canary_ws, "preview", timeout=5)
            self.assertEqual(m["job_id"], self.canary["job_id"])
            await self.canary_ws.send('{"type":"ping"}')
            await recv_type(self.canary_ws, "pong", timeout=5)
        finally:
            await self.canary_ws.close()
        r = await asyncio.to_thread(self.server.get, "/v1/healthz")
        self.assertEqual(r.status, 200, "server unhealthy after the test")
        self.assertEqual(self.server.job(self.canary["job_id"])["state"], "running")

    # -- helpers ------------------------------------------------------------
    def raw_exchange(self, data, expect_close):
        """Sends raw bytes, reads one response; checks the connection closes
        afterwards when `expect_close`."""
        c = RawHTTP(self.server.port)
        try:
            c.send_tolerant(data)
            r = c.read_response()
            if expect_close:
                self.assertTrue(c.at_eof(5.0), "connection left open after %d" % r.status)
            return r
        finally:
            c.close()

    def post_jobs(self, body_obj=None, raw=None):
        return self.server.request("POST", "/v1/jobs", body=body_obj, raw=raw)

    # -- malformed HTTP -------------------------------------------------------
    def test_malformed_http(self):
        for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
                        b"HELLO\r\n\r\n",
                        b"GET /v1/healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
                        b"GET /v1/healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                        b"GET /v1/healthz HTTP/1.1\r\nContent-Length: 5\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                        b"POST /v1/jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                        b"GET /v1/healthz HTTP/1.1\r\nHost: a\r\n\x00\x01\x02: x\r\n\r\n"):
            with self.subTest(garbage=garbage[:40]):
                r = self.raw_exchange(garbage, expect_close=True)
                assert_error(self, r, 400, "bad_request")

    def test_ambiguous_body_framing_refused(self):
        """Request smuggling: whatever a proxy in front of us might frame
        differently is refused with 400 and Connection: close, and nothing
        in it is acted on (no job is created)."""
        body = b'{"params":{"duration_s":0}}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        cases = [
            ("coding list", b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked),
            ("folded coding list", b"Transfer-Encoding: gzip,\r\n chunked\r\n\r\n" + chunked),
            ("space before colon", b"Transfer-Encoding : chunked\r\n\r\n" + chunked),
            ("two headers", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
                            b"\r\n" + chunked),
            ("with Content-Length", b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n"
                                    b"\r\n" % len(chunked) + chunked),
            ("Content-Length with space", b"Content-Length : %d\r\n\r\n" % len(body) + body),
            ("space in another name", b"X Forwarded: a\r\nContent-Length: %d\r\n\r\n"
                                      % len(body) + body),
        ]
        before = self.server.get("/v1/jobs").json["count"]
        for name, rest in cases:
            with self.subTest(name):
                r = self.raw_exchange(head + rest, expect_close=True)
                assert_error(self, r, 400, "bad_request", retryable=False)
                self.assertEqual((r.header("Connection") or "").lower(), "close")
        r = self.raw_exchange(b"POST /v1/jobs HTTP/1.0\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + chunked, expect_close=True)
        assert_error(self, r, 400, "bad_request")
        self.assertEqual(self.server.get("/v1/jobs").json["count"], before)
        # exactly `chunked`, in any case, is still a body
        r = self.raw_exchange(head + b"Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n"
                              + chunked, expect_close=True)
        self.assertEqual(r.status, 201, r)

    def test_half_request_then_close(self):
        c = RawHTTP(self.server.port)
        c.send(b"GET /v1/heal")
        c.close()
        c = RawHTTP(self.server.port)
        c.send(b"POST /v1/jobs HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"vol")
        c.close()
        self.server.assert_healthy()

    # -- bad JSON ---------------------------------------------------------------
    def test_bad_json(self):
        for raw in (b"{", b"{} x", b"[1, 2]", b"42", b'"str"', b"null", b"true",
                    b'{"volume": {"shape": [1,2,3]}', b'{"a":"\xff\xfe"}', b"\xef\xbb\xbf{",
                    b'{"a": NaN}', b"{'a': 1}"):
            with self.subTest(raw=raw):
                err = assert_error(self, self.post_jobs(raw=raw), 400, "bad_json",
                                   retryable=False)
                self.assertTrue(err["message"])

    def test_invalid_fields(self):
        cases = [
            ({"volume": 5}, "volume"),
            ({"volume": {"shape": "64x64x64"}}, "shape"),
            ({"volume": {"shape": [64, 64]}}, "shape"),
            ({"volume": {"shape": [64, 64, 64, 1]}}, "shape"),
            ({"volume": {"shape": [0, 64, 64]}}, "shape"),
            ({"volume": {"shape": [-1, 64, 64]}}, "shape"),
            ({"volume": {"shape": [4097, 1, 1]}}, "shape"),
            ({"volume": {"shape": [1.5, 2, 2]}}, "shape"),
            ({"volume": {"shape": [4096, 4096, 4096]}}, "shape"),   # > --max-volume-voxels
            ({"volume": {"shape": ["1", 2, 2]}}, "shape"),
            ({"volume": {"shape": [True, 2, 2]}}, "shape"),
            ({"volume": {"shape": [8, 8, 8], "voxel_size": 0}}, "voxel_size"),
            ({"volume": {"shape": [8, 8, 8], "voxel_size": -1.0}}, "voxel_size"),
            ({"volume": {"shape": [8, 8, 8], "voxel_size": [1, 1]}}, "voxel_size"),
            ({"volume": {"shape": [8, 8, 8], "voxel_size": [1, 0, 1]}}, "voxel_size"),
            ({"volume": {"shape": [8, 8, 8], "voxel_size": "1"}}, "voxel_size"),
            ({"params": 3}, "params"),
            ({"params": {"preview_hz": 0}}, "preview_hz"),
            ({"params": {"preview_hz": 0.05}}, "preview_hz"),
            ({"params": {"preview_hz": 30.5}}, "preview_hz"),
            ({"params": {"preview_hz": "fast"}}, "preview_hz"),
            ({"params": {"preview_scale": 0}}, "preview_scale"),
            ({"params": {"preview_scale": 17}}, "preview_scale"),
            ({"params": {"preview_scale": 1.5}}, "preview_scale"),
            ({"params": {"preview_scale": "2"}}, "preview_scale"),
            ({"params": {"duration_s": -1}}, "duration_s"),
            ({"params": {"duration_s": 86401}}, "duration_s"),
            ({"params": {"duration_s": "long"}}, "duration_s"),
            ({"params": {"seed": -1}}, "seed"),
            ({"params": {"seed": 1.5}}, "seed"),
            ({"params": {"seed": "7"}}, "seed"),
            ({"params": {"seed": True}}, "seed"),
            ({"params": {"pattern": "stripes"}}, "pattern"),
            ({"params": {"pattern": 1}}, "pattern"),
            ({"preview_hz": 100}, "preview_hz"),          # top-level params are checked too
            ({"pattern": "nope"}, "pattern"),
            ({"volume": {"shape": [8, 8, 8]}, "volume_path": "x.mrc"}, "volume"),
        ]
        before = self.server.get("/v1/jobs").json["count"]
        for body, field in cases:
            with self.subTest(body=body):
                err = assert_error(self, self.post_jobs(body), 400, "invalid_field",
                                   retryable=False)
                self.assertIn(field, err["message"], "message does not name the field")
        # nothing was created by any of them
        self.assertEqual(self.server.get("/v1/jobs").json["count"], before)

    # -- routes, methods, sizes -------------------------------------------------
    def test_unknown_routes(self):
        jid = self.canary["job_id"]
        for path in ("/", "/v1", "/v1/", "/v1/nope", "/v2/jobs", "/v1/healthz/x",
                     "/v1/jobs/%s/nope" % jid, "/v1/jobs/%s/artifacts" % jid, "/ws",
                     "/index.html", "/v1/jobs/%s/preview/x" % jid, "/%2e%2e/etc/passwd"):
            with self.subTest(path=path):
                assert_error(self, self.server.get(path), 404, "route_not_found")

    def test_wrong_methods(self):
        jid = self.canary["job_id"]
        cases = [("PUT", "/v1/jobs", {"GET", "POST"}),
                 ("DELETE", "/v1/jobs", {"GET", "POST"}),
                 ("POST", "/v1/healthz", {"GET"}),
                 ("DELETE", "/v1/server/info", {"GET"}),
                 ("PATCH", "/v1/jobs/%s" % jid, {"GET", "DELETE"}),
                 ("POST", "/v1/jobs/%s" % jid, {"GET", "DELETE"}),
                 ("POST", "/v1/jobs/%s/preview" % jid, {"GET"}),
                 ("DELETE", "/v1/jobs/%s/artifacts/mask.mrc" % jid, {"GET"}),
                 ("POST", "/metrics", {"GET"})]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                r = self.server.request(method, path)
                assert_error(self, r, 405, "method_not_allowed")
                got = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
                self.assertTrue(allow <= got, "Allow: %r" % r.header("Allow"))
        self.assertEqual(self.server.job(jid)["state"], "running")

    def test_body_too_large(self):
        big = b'{"pad":"' + b"x" * 200000 + b'"}'
        r = self.raw_exchange(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: "
                              b"application/json\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
                              expect_close=True)
        assert_error(self, r, 413, "payload_too_large")
        # announced but never sent: answered at once, no hang waiting for 10 GB
        r = self.raw_exchange(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 10000000000\r\n\r\n{", expect_close=True)
        assert_error(self, r, 413, "payload_too_large")
        chunk = b"x" * 50000
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
        r = self.raw_exchange(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + chunked, expect_close=True)
        assert_error(self, r, 413, "payload_too_large")
        # just under the limit is fine (unknown keys are ignored)
        ok = json.dumps({"pad": "y" * 90000, "volume": {"shape": [4, 4, 4]},
                         "params": {"duration_s": 0}}).encode()
        r = self.post_jobs(raw=ok)
        self.assertEqual(r.status, 201, r)

    def test_headers_too_large(self):
        r = self.raw_exchange(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 131072 +
                              b"\r\n\r\n", expect_close=True)
        assert_error(self, r, 431, "headers_too_large")
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(1000))
        r = self.raw_exchange(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n",
                              expect_close=True)
        assert_error(self, r, 431, "headers_too_large")
        r = self.raw_exchange(b"GET /v1/healthz?" + b"q" * 131072 + b" HTTP/1.1\r\nHost: x"
                              b"\r\n\r\n", expect_close=True)
        assert_error(self, r, 431, "headers_too_large")
        # 6 KiB of headers is normal and accepted
        r = self.server.get("/v1/healthz", headers={"X-Ok": "c" * 6000})
        self.assertEqual(r.status, 200)

    # -- job ids -----------------------------------------------------------------
    def test_invalid_job_id_rest(self):
        for bad in ("nope", "1", "x" * 36, "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e1",
                    "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e100", "%2e%2e",
                    "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e1%00"):
            for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/preview"),
                                   ("GET", "/artifacts/mask.mrc")):
                with self.subTest(bad=bad, method=method, suffix=suffix):
                    r = self.server.request(method, "/v1/jobs/%s%s" % (bad, suffix))
                    assert_error(self, r, 400, "invalid_job_id")

    def test_unknown_job_rest(self):
        u = new_uuid()
        for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/preview"),
                               ("GET", "/artifacts/mask.mrc")):
            with self.subTest(method=method, suffix=suffix):
                assert_error(self, self.server.request(method, "/v1/jobs/%s%s" % (u, suffix)),
                             404, "job_not_found")

    async def test_ws_invalid_and_unknown_job(self):
        for job_id, code in (("not-a-uuid", 4000), ("1234", 4000), (new_uuid(), 4404)):
            with self.subTest(job_id=job_id):
                ws = await ws_connect(self.server, job_id)
                got, seen = await wait_closed_code(ws)
                self.assertEqual(got, code)
                self.assertFalse(any('"connected"' in s for s in seen if isinstance(s, str)))

    # -- WebSocket handshakes --------------------------------------------------
    def test_bad_handshakes(self):
        path = "/ws/jobs/%s" % self.canary["job_id"]
        cases = [
            ("bad key", upgrade_request(path, key="abc"), 400, "bad_request"),
            ("15-byte key", upgrade_request(path, key="AAAAAAAAAAAAAAAAAAAA"), 400,
             "bad_request"),
            ("no key", upgrade_request(path).replace(b"Sec-WebSocket-Key", b"X-Nothing"), 400,
             "bad_request"),
            ("no upgrade header", upgrade_request(path).replace(b"Upgrade: websocket\r\n", b""),
             400, "bad_request"),
            ("upgrade to h2c", upgrade_request(path).replace(b"websocket", b"h2c"), 400,
             "bad_request"),
            ("connection keep-alive", upgrade_request(path).replace(
                b"Connection: Upgrade", b"Connection: keep-alive"), 400, "bad_request"),
            ("POST", upgrade_request(path).replace(b"GET ", b"POST ", 1), 400, "bad_request"),
            ("version 8", upgrade_request(path, version="8"), 426, "upgrade_required"),
            ("unknown path", upgrade_request("/ws/nope/%s" % new_uuid()), 404,
             "route_not_found"),
        ]
        for name, req, status, code in cases:
            with self.subTest(name):
                c = RawHTTP(self.server.port)
                try:
                    c.send_tolerant(req)
                    r = c.read_response()
                    self.assertNotEqual(r.status, 101, "server upgraded a bad handshake")
                    assert_error(self, r, status, code)
                    if status == 426:
                        self.assertEqual(r.header("Sec-WebSocket-Version"), "13")
                finally:
                    c.close()
        # no version header at all: 426 too
        c = RawHTTP(self.server.port)
        try:
            c.send_tolerant(upgrade_request(path).replace(b"Sec-WebSocket-Version: 13\r\n", b""))
            r = c.read_response()
            assert_error(self, r, 426, "upgrade_required")
            self.assertEqual(r.header("Sec-WebSocket-Version"), "13")
        finally:
            c.close()

    async def test_permessage_deflate_never_accepted(self):
        c = RawHTTP(self.server.port)
        try:
            c.send(upgrade_request("/ws/jobs/%s" % self.canary["job_id"],
                                   extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                         "client_max_window_bits\r\n"))
            r = c.read_response()
            self.assertEqual(r.status, 101)
            self.assertIsNone(r.header("Sec-WebSocket-Extensions"))
        finally:
            c.close()

    # -- WebSocket frames and messages ----------------------------------------
    async def _raw_ws(self):
        c = RawWS(self.server.port)
        await asyncio.to_thread(c.handshake, "/ws/jobs/%s" % self.canary["job_id"])
        return c

    async def _expect_close(self, c, code):
        got, _, _ = await asyncio.to_thread(c.read_until_close)
        self.assertEqual(got, code)
        self.assertTrue(await asyncio.to_thread(c.at_eof, 5.0), "TCP not closed after close")
        c.close()

    async def test_oversized_message_1009(self):
        ws = await ws_connect(self.server, self.canary["job_id"])
        await recv_msg(ws)
        # exactly the limit is accepted
        pad = 65536 - len('{"type":"ping","pad":""}')
        await ws.send('{"type":"ping","pad":"%s"}' % ("p" * pad))
        await recv_type(ws, "pong")
        await ws.send("x" * 65537)
        code, _ = await wait_closed_code(ws)
        self.assertEqual(code, 1009)
        # announced length over the limit, in a raw frame header, no body sent
        c = await self._raw_ws()
        await asyncio.to_thread(c.send_frame, 0x1, b"", True, True, 0, 1 << 40)
        await self._expect_close(c, 1009)
        # the limit applies to a fragmented message as a whole
        c = await self._raw_ws()
        await asyncio.to_thread(c.send_frame, 0x1, b"a" * 40000, False)
        await asyncio.to_thread(c.send_frame, 0x0, b"a" * 40000, True)
        await self._expect_close(c, 1009)

    async def test_protocol_errors_1002(self):
        cases = [
            ("unmasked frame", lambda c: c.send_frame(0x1, b'{"type":"ping"}', mask=False)),
            ("reserved bit", lambda c: c.send_frame(0x1, b'{"type":"ping"}', rsv=4)),
            ("opcode 3", lambda c: c.send_frame(0x3, b"x")),
            ("opcode 0xB", lambda c: c.send_frame(0xB, b"x")),
            ("continuation first", lambda c: c.send_frame(0x0, b"x")),
            ("new text in fragmented text", lambda c: (c.send_frame(0x1, b"a", fin=False),
                                                       c.send_frame(0x1, b"b"))),
            ("fragmented ping", lambda c: c.send_frame(0x9, b"x", fin=False)),
            ("ping over 125 bytes", lambda c: c.send_frame(0x9, b"x" * 126)),
            ("close code 999", lambda c: c.send_frame(0x8, struct.pack("!H", 999))),
            ("close code 1005", lambda c: c.send_frame(0x8, struct.pack("!H", 1005))),
            ("1-byte close", lambda c: c.send_frame(0x8, b"\x03")),
        ]
        for name, act in cases:
            with self.subTest(name):
                c = await self._raw_ws()
                await asyncio.to_thread(act, c)
                await self._expect_close(c, 1002)

    async def test_invalid_utf8_1007(self):
        for payload, frames in ((b'{"type":"\xff"}', 1), (b'{"a":"\xc3\x28"}', 1),
                                (b'{"a":"\xe2\x82', 2)):
            with self.subTest(payload=payload):
                c = await self._raw_ws()
                if frames == 1:
                    await asyncio.to_thread(c.send_frame, 0x1, payload)
                else:
                    # an invalid sequence split across fragments
                    await asyncio.to_thread(c.send_frame, 0x1, payload, False)
                    await asyncio.to_thread(c.send_frame, 0x0, b'\x28"}', True)
                await self._expect_close(c, 1007)

    async def test_bad_client_messages_keep_connection(self):
        ws = await ws_connect(self.server, self.canary["job_id"])
        try:
            await recv_msg(ws)
            cases = [("not json", "bad_message"), ("[1,2]", "bad_message"),
                     ('"ping"', "bad_message"), (b"\x00\x01binary", "bad_message"),
                     ('{"type":"subscribe"}', "unknown_message_type"),
                     ('{"no_type":1}', "unknown_message_type"),
                     ('{"type":5}', "unknown_message_type")]
            for sent, code in cases:
                with self.subTest(sent=sent):
                    await ws.send(sent)
                    err = await recv_until_error(ws)
                    check_envelope(self, err, self.canary["job_id"])
                    self.assertEqual(err["seq"], 0)
                    d = err["data"]
                    self.assertEqual(d["code"], code)
                    self.assertIsInstance(d["message"], str)
                    self.assertIn("hint", d)
                    self.assertIs(d["retryable"], False)
            # still open and streaming
            await ws.send('{"type":"ping"}')
            await recv_type(ws, "pong")
            await recv_type(ws, "preview")
        finally:
            await ws.close()
        self.assertEqual(ws.close_code, 1000)

    async def test_rfc6455_ping_and_close_echo(self):
        c = await self._raw_ws()
        try:
            await asyncio.to_thread(c.send_frame, 0x9, b"hello")
            seen = []
            while True:
                op, data = await asyncio.to_thread(c.read_message)
                seen.append(op)
                if op == 0xA:
                    self.assertEqual(data, b"hello")
                    break
                self.assertEqual(op, 0x1)
                json.loads(data.decode())
            await asyncio.to_thread(c.send_close, 1000)
            code, _, _ = await asyncio.to_thread(c.read_until_close)
            self.assertEqual(code, 1000)
            self.assertTrue(await asyncio.to_thread(c.at_eof, 5.0))
        finally:
            c.close()

    async def test_fragmented_message_and_interleaved_ping(self):
        c = await self._raw_ws()
        try:
            await asyncio.to_thread(c.send_frame, 0x1, b'{"type"', False)
            await asyncio.to_thread(c.send_frame, 0x9, b"mid")      # allowed between fragments
            await asyncio.to_thread(c.send_frame, 0x0, b':"pi', False)
            await asyncio.to_thread(c.send_frame, 0x0, b'ng"}', True)
            got_pong_frame = got_json_pong = False
            while not (got_pong_frame and got_json_pong):
                op, data = await asyncio.to_thread(c.read_message)
                self.assertNotEqual(op, 0x8, "server closed: %r" % data)
                if op == 0xA:
                    self.assertEqual(data, b"mid")
                    got_pong_frame = True
                elif op == 0x1:
                    m = json.loads(data.decode())
                    if m["type"] == "pong":
                        got_json_pong = True
                    self.assertNotEqual(m["type"], "error", m)
        finally:
            c.close()

    async def test_close_reason_invalid_utf8_1007(self):
        c = await self._raw_ws()
        await asyncio.to_thread(c.send_frame, 0x8, struct.pack("!H", 1000) + b"bad \xff reason")
        await self._expect_close(c, 1007)

    async def test_ping_flood_without_reading(self):
        # A client that pings without reading must not grow the server without bound.
        c = await self._raw_ws()
        c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        rss0 = self.server.rss_kib()
        frame = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
        sent = 0
        c.sock.settimeout(0.5)
        try:
            for _ in range(2000):
                try:
                    c.sock.sendall(frame * 100)
                    sent += 100
                except (socket_timeout(), BrokenPipeError, ConnectionResetError):
                    break
        finally:
            rss1 = self.server.rss_kib()
            c.close()
        grown = (rss1 - rss0) / 1024.0
        print("\n  ping flood: %d pings sent before the server stopped reading; RSS %+.1f MiB"
              % (sent, grown), file=sys.stderr)
        self.assertLess(grown, 64 * RSS_SCALE,
                        "RSS grew %.0f MiB after %d unanswered pings" % (grown, sent))
        self.server.assert_healthy()

    # -- pipelining ---------------------------------------------------------------
    def test_pipelined_requests_in_order(self):
        jid = self.canary["job_id"]
        body = json.dumps({"volume": {"shape": [3, 4, 5]}, "params": {"duration_s": 0}}).encode()
        reqs = (b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /v1/jobs/%s HTTP/1.1\r\nHost: x\r\n\r\n" % jid.encode() +
                b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body +
                b"GET /v1/jobs/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /v1/server/info HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        c = RawHTTP(self.server.port)
        try:
            c.send(reqs)
            rs = [c.read_response() for _ in range(6)]
            self.assertTrue(c.at_eof(5.0))
        finally:
            c.close()
        self.assertEqual([r.status for r in rs], [200, 200, 201, 400, 200, 200])
        self.assertEqual(rs[0].json, {"status": "ok"})
        self.assertEqual(rs[1].json["job_id"], jid)
        self.assertEqual(rs[2].json["volume"]["shape"], [3, 4, 5])
        self.assertEqual(rs[3].json["error"]["code"], "invalid_job_id")
        self.assertEqual(rs[4].json["name"], "cryomambad")

    def test_pipelined_request_then_upgrade(self):
        jid = self.canary["job_id"]
        c = RawWS(self.server.port)
        try:
            c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
                   upgrade_request("/ws/jobs/%s" % jid))
            r1 = c.read_response()
            self.assertEqual(r1.status, 200)
            r2 = c.read_response()
            self.assertEqual(r2.status, 101)
            op, data = c.read_message()
            self.assertEqual(op, 0x1)
            self.assertEqual(json.loads(data)["type"], "connected")
            c.send_close(1000)
            code, _, _ = c.read_until_close()
            self.assertEqual(code, 1000)
        finally:
            c.close()

    # -- volume paths ---------------------------------------------------------------
    def _write_mrc(self, rel, shape, voxel_zyx, dtype=np.float32):
        path = os.path.join(self.server.data_root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.zeros(shape, dtype=dtype))
            m.voxel_size = (voxel_zyx[2], voxel_zyx[1], voxel_zyx[0])  # x, y, z
        return path

    def test_volume_path_valid(self):
        self._write_mrc("vol.mrc", (10, 20, 30), (2.0, 1.5, 1.0))
        self._write_mrc("sub/dir/vol2.mrc", (7, 9, 11), (3.0, 3.0, 3.0), dtype=np.int16)
        r = self.post_jobs({"volume_path": "vol.mrc",
                            "params": {"duration_s": 0, "preview_scale": 4}})
        self.assertEqual(r.status, 201, r)
        self.addCleanup(self.server.request, "DELETE", "/v1/jobs/%s" % r.json["job_id"])
        v = r.json["volume"]
        self.assertEqual(v["shape"], [10, 20, 30])
        for got, want in zip(v["voxel_size"], [2.0, 1.5, 1.0]):
            self.assertAlmostEqual(got, want, places=4)
        self.assertEqual(v["path"], "vol.mrc")
        self.assertEqual(r.json["preview_shape"], [3, 5, 8])
        r = self.post_jobs({"volume": {"path": "sub/dir/vol2.mrc"}, "params": {"duration_s": 0}})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["volume"]["shape"], [7, 9, 11])
        self.assertEqual(r.json["volume"]["path"], "sub/dir/vol2.mrc")
        done = self.server.wait_state(r.json["job_id"], "completed", timeout=30)
        self.assertEqual(done["volume"]["shape"], [7, 9, 11])

    def test_volume_path_invalid(self):
        root = self.server.data_root
        outside = os.path.join(self.server.tmp, "outside.mrc")
        with mrcfile.new(outside, overwrite=True) as m:
            m.set_data(np.zeros((4, 4, 4), dtype=np.float32))
        self._write_mrc("good.mrc", (4, 4, 4), (1, 1, 1))
        os.symlink(outside, os.path.join(root, "link.mrc"))
        os.symlink(self.server.tmp, os.path.join(root, "linkdir"))
        with open(os.path.join(root, "notmrc.mrc"), "w") as f:
            f.write("this is not an MRC file\n" * 100)
        with open(os.path.join(root, "good.mrc"), "rb") as f:
            head = f.read()
        with open(os.path.join(root, "truncated.mrc"), "wb") as f:
            f.write(head[:1024 + 10])
        with open(os.path.join(root, "short.mrc"), "wb") as f:
            f.write(head[:100])
        os.makedirs(os.path.join(root, "adir.mrc"), exist_ok=True)
        for p in ("../outside.mrc", outside, "/etc/passwd", "sub/../../outside.mrc",
                  "./../outside.mrc", "link.mrc", "linkdir/outside.mrc", "missing.mrc",
                  "notmrc.mrc", "truncated.mrc", "short.mrc", "adir.mrc", ".",
                  "linkdir/../good.mrc/.."):
            with self.subTest(path=p):
                r = self.post_jobs({"volume_path": p})
                assert_error(self, r, 400, "invalid_volume_path")
        assert_error(self, self.post_jobs({"volume_path": ""}), 400, "invalid_volume_path")
        # an embedded NUL never reaches the file system
        assert_error(self, self.post_jobs({"volume_path": "good.mrc\u0000/../../outside.mrc"}),
                     400, "bad_json")
        err = assert_error(self, self.post_jobs({"volume_path": 5}), 400, "invalid_field")
        self.assertIn("volume_path", err["message"])


def socket_timeout():
    import socket
    return socket.timeout


async def recv_until_error(ws, timeout=EV):
    while True:
        m, _ = await recv_msg(ws, timeout)
        if m["type"] == "error" and m["seq"] == 0:
            return m
        if m["type"] == "error":
            raise AssertionError("job error instead of a reply: %r" % m)


if __name__ == "__main__":
    main()
