"""test_trusted_proxy.py: --trusted-proxy without a proxy in between: this
test's own sockets are the "proxy" (every connection comes from 127.0.0.1),
so X-Forwarded-For is whatever the test writes. Checks that only a trusted
peer's header counts, that per-address limits (connections, uploads) and
log lines then use the forwarded client, that a trusted proxy's connections
count for a client only while they carry its request, and that malformed
headers are the peer's and harm nothing. tests/integration/test_nginx.py
runs the same through a real nginx."""

import asyncio
import json
import time
import unittest

import websockets

from harness import EV, RawHTTP, Server, assert_error, upgrade_request, ws_key

TUS = {"Tus-Resumable": "1.0.0"}


def xff_get(port, xff, path="/v1/server/info"):
    """One GET on a fresh connection with X-Forwarded-For: `xff` (a str, a
    list of header values, or None); returns (Resp, RawHTTP)."""
    c = RawHTTP(port)
    hdrs = ""
    for v in ([] if xff is None else [xff] if isinstance(xff, str) else xff):
        hdrs += "X-Forwarded-For: %s\r\n" % v
    c.send(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, hdrs)).encode("latin-1"))
    return c.read_response(), c


def poll(cond, what, timeout=EV):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("not within %.0f s: %s" % (timeout, what))


class ServerCase(unittest.TestCase):
    args = ()

    def setUp(self):
        self.srv = Server(self.args).start()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        try:
            # The closes above reach the server asynchronously: until then
            # a held connection may still fill this address's one slot.
            poll(lambda: self.srv.get("/v1/healthz").status == 200,
                 "healthz answers once the test's connections are closed")
            self.srv.assert_healthy()
            self.assertEqual(self.srv.stop(), 0)
        finally:
            self.srv.cleanup()

    def info_client(self, xff):
        r, c = xff_get(self.srv.port, xff)
        c.close()
        self.assertEqual(r.status, 200, r)
        return r.json["client_address"]

    def create_upload(self, xff):
        h = dict(TUS, **{"Upload-Length": "10"})
        if xff is not None:
            h["X-Forwarded-For"] = xff
        return self.srv.request("POST", "/v1/uploads", headers=h)


class UntrustedPeerTest(ServerCase):
    """The test's address is not trusted: its X-Forwarded-For is ignored."""
    args = ("--trusted-proxy", "192.0.2.1/32", "--max-connections-per-ip", "1",
            "--max-uploads-per-ip", "1")

    def test_info_shows_the_peer_and_the_trusted_networks(self):
        r, c = xff_get(self.srv.port, "203.0.113.5")
        c.close()
        self.assertEqual(r.json["client_address"], "127.0.0.1")
        self.assertEqual(r.json["limits"]["trusted_proxies"], ["192.0.2.1/32"])

    def test_spoofed_header_does_not_escape_the_connection_limit(self):
        hold = RawHTTP(self.srv.port)  # the address's one connection
        self.socks.append(hold)
        r, c = xff_get(self.srv.port, "203.0.113.5")
        self.socks.append(c)
        assert_error(self, r, 503, "too_many_connections")
        self.assertTrue(c.at_eof(), "the refused connection closes")

    def test_spoofed_header_does_not_escape_the_upload_limit(self):
        self.assertEqual(self.create_upload("203.0.113.5").status, 201)
        assert_error(self, self.create_upload("203.0.113.6"), 429, "too_many_uploads")


class TrustedPeerTest(ServerCase):
    """The test's address is a trusted proxy: its header names the client."""
    args = ("--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8",
            "--max-connections-per-ip", "1", "--max-uploads-per-ip", "1")

    def test_forwarded_address_is_the_client(self):
        self.assertEqual(self.info_client("203.0.113.5"), "203.0.113.5")
        # The right-most untrusted address; trusted hops are skipped.
        self.assertEqual(self.info_client("198.51.100.1, 203.0.113.5, 10.1.2.3"),
                         "203.0.113.5")
        # Several headers are one list.
        self.assertEqual(self.info_client(["198.51.100.1", "203.0.113.5", "10.1.2.3"]),
                         "203.0.113.5")
        self.assertEqual(self.info_client("2001:db8::5"), "2001:db8::5")
        self.assertEqual(self.info_client(None), "127.0.0.1")
        r = self.srv.get("/v1/server/info")
        self.assertEqual(r.json["limits"]["trusted_proxies"], ["127.0.0.1/32", "10.0.0.0/8"])

    def test_malformed_header_is_the_peer_and_harms_nothing(self):
        for bad in ["", "garbage", "unknown", "203.0.113.5:4000", "[::1]:80", ",,,",
                    "203.0.113.5,", "1.2.3.4.5", "\xe9\xff", "%s" % ("9" * 8000),
                    ", ".join(["10.0.0.1"] * 1500) + ", x"]:
            self.assertEqual(self.info_client(bad), "127.0.0.1", repr(bad[:40]))
        # Behind a trusted hop, the address that hop vouched for.
        self.assertEqual(self.info_client("junk, 10.9.9.9"), "10.9.9.9")
        self.srv.assert_healthy()

    def test_per_client_connection_limit(self):
        # A request in flight (headers in, body pending) holds client A's slot.
        a = RawHTTP(self.srv.port)
        self.socks.append(a)
        a.send(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        def a_is_counted():
            r, c = xff_get(self.srv.port, "203.0.113.1")
            c.close()
            return r.status == 503
        poll(a_is_counted, "client A's second connection refused")
        r, c = xff_get(self.srv.port, "203.0.113.1")
        self.socks.append(c)
        assert_error(self, r, 503, "too_many_connections", retryable=True)
        self.assertTrue(c.at_eof(), "the refused connection closes")
        # Another client behind the same proxy is not held up.
        self.assertEqual(self.info_client("203.0.113.2"), "203.0.113.2")
        # Once A's request is answered its connection (kept alive, idle) is
        # no one's, and A gets in again.
        a.send(b"{}")
        self.assertEqual(a.read_response().status, 201)
        self.assertEqual(self.info_client("203.0.113.1"), "203.0.113.1")
        # The kept-alive connection carries another client's request next.
        a.send(b"GET /v1/server/info HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.3\r\n\r\n")
        self.assertEqual(a.read_response().json["client_address"], "203.0.113.3")

    def test_idle_proxy_connections_count_for_no_one(self):
        idle = [RawHTTP(self.srv.port) for _ in range(4)]
        self.socks.extend(idle)
        # Each idle connection was accepted (none refused at accept)...
        for c in idle:
            c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        # ...and, between requests, none holds the proxy's own address.
        self.assertEqual(self.info_client(None), "127.0.0.1")

    def test_websocket_holds_its_client_until_it_closes(self):
        r = self.srv.request("POST", "/v1/jobs", body={"params": {"duration_s": 60}})
        self.assertEqual(r.status, 201, r)
        job = r.json["job_id"]
        try:
            ws = RawHTTP(self.srv.port)
            self.socks.append(ws)
            ws.send(upgrade_request("/ws/jobs/%s" % job, ws_key(),
                                    extra="X-Forwarded-For: 203.0.113.7\r\n"))
            self.assertEqual(ws.read_response().status, 101)
            r, c = xff_get(self.srv.port, "203.0.113.7")
            self.socks.append(c)
            assert_error(self, r, 503, "too_many_connections")
            self.assertEqual(self.info_client("203.0.113.8"), "203.0.113.8")
            # The log names the client and the proxy it came through.
            def logged():
                with open(self.srv.stderr_path, encoding="utf-8", errors="replace") as f:
                    recs = [json.loads(l) for l in f if '"ws.open"' in l]
                return any(r.get("peer") == "203.0.113.7" and
                           r.get("via", "").startswith("127.0.0.1:") for r in recs)
            poll(logged, "ws.open logged with peer 203.0.113.7 via 127.0.0.1")
            ws.close()
            def a_free():
                r2, c2 = xff_get(self.srv.port, "203.0.113.7")
                c2.close()
                return r2.status == 200
            poll(a_free, "client released when its WebSocket closed")
        finally:
            self.srv.request("DELETE", "/v1/jobs/%s" % job)

    def test_per_client_upload_limit(self):
        self.assertEqual(self.create_upload("203.0.113.1").status, 201)
        assert_error(self, self.create_upload("203.0.113.1"), 429, "too_many_uploads")
        self.assertEqual(self.create_upload("203.0.113.2").status, 201)
        # The proxy's own requests (no header) are one more client.
        self.assertEqual(self.create_upload(None).status, 201)


class ConfigTest(unittest.TestCase):
    def test_bad_values_refused_at_start(self):
        for args, env in [(["--trusted-proxy", "10.0.0.1/8"], None),
                          (["--trusted-proxy", "10.0.0.0/33"], None),
                          (["--trusted-proxy", "proxy.example"], None),
                          (["--trusted-proxy", "10.0.0.0/8,,127.0.0.1"], None),
                          ([], {"CRYOMAMBA_TRUSTED_PROXY": "nonsense"})]:
            srv = Server(args, env=env)
            try:
                with self.assertRaises(AssertionError, msg=repr((args, env))) as cm:
                    srv.start()
                self.assertIn("trusted", str(cm.exception).lower())
            finally:
                srv.cleanup()

    def test_environment_list_and_flags_replace_it(self):
        srv = Server([], env={"CRYOMAMBA_TRUSTED_PROXY": "10.0.0.0/8, ::1"}).start()
        try:
            self.assertEqual(srv.get("/v1/server/info").json["limits"]["trusted_proxies"],
                             ["10.0.0.0/8", "::1/128"])
        finally:
            srv.stop()
            srv.cleanup()
        srv = Server(["--trusted-proxy", "127.0.0.1"],
                     env={"CRYOMAMBA_TRUSTED_PROXY": "10.0.0.0/8"}).start()
        try:
            self.assertEqual(srv.get("/v1/server/info").json["limits"]["trusted_proxies"],
                             ["127.0.0.1/32"])
        finally:
            srv.stop()
            srv.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
