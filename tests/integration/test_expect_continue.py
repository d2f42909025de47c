#!/usr/bin/python3
"""Expect: 100-continue (docs/protocol.md §2): the server answers
"HTTP/1.1 100 Continue" once a request's headers are in and before its body,
unless it refuses the request at once (401/403 without the right token, 413
for a Content-Length over the limit, 417 for another expectation), then
closes; HTTP/1.0 clients and requests without a body get no 100."""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SERVER_BIN, RawHTTP, Server, ServerTestCase,  # noqa: E402
                     assert_error, main)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
WRITE_TOKEN = "w-expect-0123456789"
READ_TOKEN = "r-expect-9876543210"
BODY = json.dumps({"volume": {"shape": [4, 5, 6]}, "params": {"duration_s": 0}}).encode()


def post_head(length, extra=b""):
    return (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n" % length) + extra + b"\r\n"


class ExpectContinueTest(ServerTestCase):
    SERVER_ARGS = ("--max-body-bytes", "10000")

    def test_100_continue_comes_before_the_body(self):
        c = RawHTTP(self.server.port, timeout=5)
        try:
            c.send(post_head(len(BODY)))
            # the body is held back until the server says so
            self.assertEqual(c.read_exact(len(CONTINUE)), CONTINUE)
            c.send(BODY)
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json["volume"]["shape"], [4, 5, 6])
            self.assertEqual(r.header("Connection"), "keep-alive")
            # the connection goes on as usual, chunked bodies too
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
            c.send(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            self.assertEqual(c.read_exact(len(CONTINUE)), CONTINUE)
            c.send(chunked + b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 201)
            self.assertEqual(c.read_response().json, {"status": "ok"})
        finally:
            c.close()

    def test_curl_sends_the_body_on_the_100(self):
        # --expect100-timeout 10: without the 100, curl would wait 10 s and
        # then send the body anyway (the default is 1 s)
        t0 = time.monotonic()
        p = subprocess.run(["curl", "-sS", "-v", "--expect100-timeout", "10",
                            "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
                            "--data-binary", "@-", "-w", "\n%{http_code}",
                            "%s/v1/jobs" % self.server.base],
                           input=BODY, capture_output=True, timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"< HTTP/1.1 100 Continue", p.stderr)
        body, _, code = p.stdout.rpartition(b"\n")
        self.assertEqual(code, b"201")
        self.assertEqual(json.loads(body)["volume"]["shape"], [4, 5, 6])
        self.assertLess(elapsed, 5.0, "curl waited for a 100 that did not come")

    def test_unknown_expectation_is_417(self):
        c = RawHTTP(self.server.port, timeout=5)
        try:
            c.send(post_head(len(BODY)).replace(b"100-continue", b"200-ok"))
            r = c.read_response()
            assert_error(self, r, 417, "expectation_failed", retryable=False)
            self.assertEqual(r.header("Connection"), "close")
            self.assertTrue(c.at_eof(5.0), "connection left open after 417")
        finally:
            c.close()

    def test_too_large_is_413_without_100(self):
        c = RawHTTP(self.server.port, timeout=5)
        try:
            c.send(post_head(20000))
            r = c.read_response()
            assert_error(self, r, 413, "payload_too_large")
            self.assertEqual(r.header("Connection"), "close")
            self.assertTrue(c.at_eof(5.0))
        finally:
            c.close()

    def test_no_100_for_http10_or_without_body(self):
        c = RawHTTP(self.server.port, timeout=5)
        try:
            # a 1.0 client's expectation is ignored: it sends the body anyway
            c.send(post_head(len(BODY)).replace(b"HTTP/1.1", b"HTTP/1.0") + BODY)
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
        finally:
            c.close()
        c = RawHTTP(self.server.port, timeout=5)
        try:
            c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"
                   b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.read_response().status, 201)
        finally:
            c.close()
        self.server.assert_healthy()


class ExpectContinueAuthTest(ServerTestCase):
    """With tokens, a request that would be refused is refused before its
    body: no 100, 401/403, Connection: close."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(env={"CRYOMAMBA_TOKEN": WRITE_TOKEN})
        digest = subprocess.run([SERVER_BIN, "--hash-token", READ_TOKEN], check=True,
                                capture_output=True, text=True).stdout.split()[0]
        path = os.path.join(cls.server.tmp, "tokens")
        with open(path, "w") as f:
            f.write("%s read\n" % digest)
        cls.server.args += ["--auth-file", path]
        cls.server.start()

    def test_refused_before_the_body(self):
        for extra, status, code in ((b"", 401, "unauthorized"),
                                    (b"Authorization: Bearer nope\r\n", 401, "unauthorized"),
                                    (b"Authorization: Bearer %s\r\n" % READ_TOKEN.encode(), 403,
                                     "forbidden")):
            with self.subTest(status=status, extra=extra[:25]):
                c = RawHTTP(self.server.port, timeout=5)
                try:
                    c.send(post_head(len(BODY), extra))
                    r = c.read_response()  # the refusal, not a 100
                    assert_error(self, r, status, code)
                    self.assertEqual(r.header("Connection"), "close")
                    self.assertTrue(c.at_eof(5.0), "connection left open")
                finally:
                    c.close()
        self.server.assert_healthy()

    def test_authorized_gets_the_100(self):
        c = RawHTTP(self.server.port, timeout=5)
        try:
            c.send(post_head(len(BODY), b"Authorization: Bearer %s\r\n" % WRITE_TOKEN.encode()))
            self.assertEqual(c.read_exact(len(CONTINUE)), CONTINUE)
            c.send(BODY)
            self.assertEqual(c.read_response().status, 201)
        finally:
            c.close()


if __name__ == "__main__":
    main()
