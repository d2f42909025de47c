"""test_auth_encodings.py: bearer tokens (401/403, every route but healthz,
WebSocket by header or access_token query, hashed auth files) and the opt-in
binary preview encodings (raw, zstd) chosen by query or subprotocol, which
must decode to exactly the voxels of the reference JSON + base64 stream."""

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EV, SERVER_BIN, RawHTTP, Server, ServerTestCase,  # noqa: E402
                     assert_error, main, recv_type, upgrade_request, wait_closed_code)

import websockets  # noqa: E402
import websockets.client  # noqa: E402
import websockets.exceptions  # noqa: E402

WRITE_TOKEN = "w-token-0123456789"
READ_TOKEN = "r-token-9876543210"
# A token only usable in a URL once percent-encoded ("+" is not a space).
ODD_TOKEN = "odd token/with+?&=#%\u00e9"


def hash_line(token, scope):
    out = subprocess.run([SERVER_BIN, "--hash-token", token], check=True,
                         capture_output=True, text=True).stdout.strip()
    digest, default_scope = out.split()
    assert default_scope == "write" and len(digest) == 64, out
    assert token not in out
    return "%s %s\n" % (digest, scope)


class AuthTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        path = os.path.join(cls.server.tmp, "tokens")
        with open(path, "w") as f:
            f.write("# tokens for the tests\n\n")
            f.write(hash_line(READ_TOKEN, "read"))
            f.write(hash_line(ODD_TOKEN, "read"))
        cls.server.args += ["--auth-file", path]
        cls.server.env = {"CRYOMAMBA_TOKEN": WRITE_TOKEN}
        cls.server.start()

    def auth(self, token):
        return {"Authorization": "Bearer " + token}

    def test_health_needs_no_token(self):
        r = self.server.get("/v1/healthz")
        self.assertEqual(r.status, 200)

    def test_every_other_route_needs_one(self):
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/server/info"),
                             ("POST", "/v1/jobs"), ("GET", "/metrics"),
                             ("GET", "/v1/jobs/%s" % ("0" * 8 + "-0000-4000-8000-" + "0" * 12))):
            with self.subTest(route=path, method=method):
                r = self.server.request(method, path)
                err = assert_error(self, r, 401, "unauthorized")
                self.assertIn("Bearer", r.header("WWW-Authenticate") or "")
                self.assertNotIn(WRITE_TOKEN, json.dumps(err))
                r = self.server.request(method, path, headers=self.auth("wrong"))
                assert_error(self, r, 401, "unauthorized")

    def test_scopes(self):
        r = self.server.request("POST", "/v1/jobs", body={},
                                headers=self.auth(READ_TOKEN))
        assert_error(self, r, 403, "forbidden")
        r = self.server.request("POST", "/v1/jobs",
                                body={"params": {"duration_s": 30}},
                                headers=self.auth(WRITE_TOKEN))
        self.assertEqual(r.status, 201, r)
        job_id = r.json["job_id"]
        r = self.server.get("/v1/jobs/%s" % job_id, headers=self.auth(READ_TOKEN))
        self.assertEqual(r.status, 200)
        r = self.server.request("DELETE", "/v1/jobs/%s" % job_id,
                                headers=self.auth(READ_TOKEN))
        assert_error(self, r, 403, "forbidden")
        r = self.server.request("DELETE", "/v1/jobs/%s" % job_id,
                                headers=self.auth(WRITE_TOKEN))
        self.assertEqual(r.status, 200, r)
        info = self.server.get("/v1/server/info", headers=self.auth(READ_TOKEN)).json
        self.assertIs(info["auth_required"], True)

    async def test_websocket_by_header_or_query(self):
        r = self.server.request("POST", "/v1/jobs", body={"params": {"duration_s": 30}},
                                headers=self.auth(WRITE_TOKEN))
        job_id = r.json["job_id"]
        self.addCleanup(self.server.request, "DELETE", "/v1/jobs/%s" % job_id,
                        headers=self.auth(WRITE_TOKEN))
        url = self.server.ws_url(job_id)
        with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
            await websockets.client.connect(url, open_timeout=EV)
        self.assertEqual(cm.exception.status_code, 401)
        with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
            await websockets.client.connect(url + "?access_token=nope", open_timeout=EV)
        self.assertEqual(cm.exception.status_code, 401)
        for kw in ({"extra_headers": self.auth(READ_TOKEN)},
                   {"uri": url + "?access_token=" + READ_TOKEN}):
            target = kw.pop("uri", url)
            ws = await websockets.client.connect(target, open_timeout=EV, **kw)
            try:
                msg = await recv_type(ws, "connected")
                self.assertEqual(msg["job_id"], job_id)
            finally:
                await ws.close()
        self.server.assert_healthy()

    def _ws_handshake(self, job_id, query):
        c = RawHTTP(self.server.port)
        try:
            c.send(upgrade_request("/ws/jobs/%s?%s" % (job_id, query)))
            return c.read_response()
        finally:
            c.close()

    def test_query_token_is_percent_decoded(self):
        r = self.server.request("POST", "/v1/jobs", body={"params": {"duration_s": 30}},
                                headers=self.auth(WRITE_TOKEN))
        job_id = r.json["job_id"]
        self.addCleanup(self.server.request, "DELETE", "/v1/jobs/%s" % job_id,
                        headers=self.auth(WRITE_TOKEN))
        every_byte = "".join("%%%02x" % b for b in READ_TOKEN.encode())
        for query in ("access_token=" + urllib.parse.quote(ODD_TOKEN, safe=""),
                      "x=1&access_token=" + urllib.parse.quote(ODD_TOKEN, safe="") + "&y=2",
                      "access_token=" + every_byte,
                      "access_token=" + every_byte.upper()):
            with self.subTest(query=query):
                self.assertEqual(self._ws_handshake(job_id, query).status, 101)
        for query in ("access_token=%zz" + READ_TOKEN, "access_token=" + READ_TOKEN + "%",
                      "access_token=" + READ_TOKEN + "%4", "access_token=%G0",
                      "access_token=" + READ_TOKEN + "%00",
                      "access_token=%00" + READ_TOKEN,
                      "access_token=" + urllib.parse.quote(ODD_TOKEN, safe="").replace(
                          "%20", "+")):
            with self.subTest(query=query):
                r = self._ws_handshake(job_id, query)
                assert_error(self, r, 401, "unauthorized")
                self.assertIn("invalid_token", r.header("WWW-Authenticate") or "")
        self.server.assert_healthy()

    def test_server_log_never_holds_tokens(self):
        self.server.get("/v1/jobs?access_token=" + READ_TOKEN)
        self.server.get("/v1/jobs", headers=self.auth(WRITE_TOKEN))
        tail = self.server.stderr_tail(100000)
        self.assertNotIn(WRITE_TOKEN, tail)
        self.assertNotIn(READ_TOKEN, tail)

    def test_bad_auth_file_is_refused_at_start(self):
        bad = Server()
        path = os.path.join(bad.tmp, "tokens")
        with open(path, "w") as f:
            f.write("not-a-digest write\n")
        bad.args += ["--auth-file", path]
        try:
            with self.assertRaises(AssertionError) as cm:
                bad.start()
            self.assertIn("tokens:1", str(cm.exception))
            self.assertEqual(bad.proc.wait(5), 2)
        finally:
            bad.cleanup()


def unpack_binary(tc, raw):
    """Splits a binary preview into (envelope, payload) and checks its frame."""
    tc.assertIsInstance(raw, bytes)
    (head_len,) = struct.unpack(">I", raw[:4])
    env = json.loads(raw[4:4 + head_len])
    payload = raw[4 + head_len:]
    tc.assertEqual(env["type"], "preview")
    tc.assertEqual(env["data"]["payload_bytes"], len(payload))
    tc.assertNotIn("payload", env["data"])
    return env, payload


class EncodingTest(ServerTestCase):
    async def stream(self, job_id, query="", subprotocols=None):
        ws = await websockets.client.connect(
            self.server.ws_url(job_id) + query, max_size=2 ** 28, open_timeout=EV,
            subprotocols=subprotocols, ping_interval=None)
        previews = {}
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), EV)
                if isinstance(raw, bytes):
                    env, payload = unpack_binary(self, raw)
                    previews[env["seq"]] = (env["data"]["encoding"], payload,
                                            env["data"]["shape"])
                    continue
                msg = json.loads(raw)
                if msg["type"] == "preview":
                    previews[msg["seq"]] = ("base64", base64.b64decode(msg["data"]["payload"]),
                                            msg["data"]["shape"])
                if msg["type"] == "completed":
                    return previews, ws.subprotocol
        finally:
            await ws.close()

    async def test_raw_and_zstd_carry_the_same_voxels(self):
        job = self.make_job({"volume": {"shape": [33, 40, 50]}},
                            preview_hz=4, duration_s=2.5, pattern="blobs", preview_scale=2)
        jid = job["job_id"]
        (b64, p0), (raw, p1), (zst, p2), (zst_q, p3) = await asyncio.gather(
            self.stream(jid), self.stream(jid, "?encoding=raw"),
            self.stream(jid, subprotocols=["cryomamba.v1.zstd"]),
            self.stream(jid, "?encoding=zstd"))
        self.assertIsNone(p0)
        self.assertIsNone(p1)
        self.assertEqual(p2, "cryomamba.v1.zstd")
        self.assertTrue(b64, "no previews")
        final_seq = max(b64)
        for enc_name, got in (("raw", raw), ("zstd", zst), ("zstd", zst_q)):
            self.assertEqual(got[final_seq][0], enc_name)
        for seq, (enc, data, shape) in b64.items():
            self.assertEqual(shape, [17, 20, 25])
            self.assertEqual(len(data), 17 * 20 * 25)
            if seq in raw:
                self.assertEqual(raw[seq][1], data, "raw voxels differ at seq %d" % seq)
            if seq in zst and zst[seq][0] == "zstd":
                self.assertEqual(zstd_decompress(zst[seq][1], len(data)), data,
                                 "zstd voxels differ at seq %d" % seq)
                self.assertLess(len(zst[seq][1]), len(data))

    async def test_large_previews_base64_equals_raw(self):
        """Previews over 2 MiB are base64-encoded by two threads; every byte
        must still match the raw voxels of the same preview."""
        job = self.make_job({"volume": {"shape": [64, 192, 193]}},
                            preview_hz=5, duration_s=1.2, pattern="random")
        jid = job["job_id"]
        (b64, _), (raw, _) = await asyncio.gather(
            self.stream(jid), self.stream(jid, "?encoding=raw"))
        common = sorted(set(b64) & set(raw))
        self.assertGreaterEqual(len(common), 2, (sorted(b64), sorted(raw)))
        for seq in common:
            self.assertEqual(len(b64[seq][1]), 64 * 192 * 193)
            self.assertEqual(b64[seq][1], raw[seq][1], "seq %d differs" % seq)

    async def test_unknown_encoding_is_refused_before_upgrade(self):
        job = self.make_job(duration_s=30)
        with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
            await websockets.client.connect(
                self.server.ws_url(job["job_id"]) + "?encoding=gzip", open_timeout=EV)
        self.assertEqual(cm.exception.status_code, 400)
        self.server.assert_healthy()

    async def test_unknown_subprotocol_gets_the_default(self):
        job = self.make_job(duration_s=30, preview_hz=5)
        ws = await websockets.client.connect(self.server.ws_url(job["job_id"]),
                                             open_timeout=EV, max_size=2 ** 28,
                                             subprotocols=["other.v9"])
        self.assertIsNone(ws.subprotocol)
        try:
            msg = await recv_type(ws, "preview")
            self.assertIn("payload", msg["data"])
        finally:
            await ws.close()


def zstd_decompress(data, size):
    """Decompresses with the zstd command-line tool (Debian's zstd package
    comes with libzstd-dev's dependencies), so no Python binding is needed."""
    out = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True,
                         check=True).stdout
    assert len(out) == size, (len(out), size)
    return out


if __name__ == "__main__":
    main()
