#!/usr/bin/python3
"""Shutdown (docs/protocol.md §6, §7): on SIGTERM or SIGINT every subscriber
sees close 1001 and the server exits 0 within 10 s, even with a stalled
subscriber, idle keep-alive connections and half-sent requests."""

import asyncio
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (RawHTTP, RawWS, Server, main, recv_type,  # noqa: E402
                     wait_closed_code, ws_connect)


class ShutdownTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.server = Server(("--max-running", "2")).start()
        self.addCleanup(self.server.cleanup)

    async def _subscribers_see_1001(self, sig):
        job = self.server.create_job({"volume": {"shape": [8, 8, 8]},
                                      "params": {"preview_hz": 5, "duration_s": 600}})
        done = self.server.create_job({"volume": {"shape": [4, 4, 4]},
                                       "params": {"duration_s": 0}})
        self.server.wait_state(done["job_id"], "completed")
        a = await ws_connect(self.server, job["job_id"])
        b = await ws_connect(self.server, done["job_id"])  # subscribed to a finished job
        await recv_type(a, "preview")
        await recv_type(b, "completed")
        rc_task = asyncio.create_task(asyncio.to_thread(self.server.stop, sig))
        code_a, _ = await wait_closed_code(a, timeout=10)
        code_b, _ = await wait_closed_code(b, timeout=10)
        rc = await rc_task
        self.assertEqual(code_a, 1001)
        self.assertEqual(code_b, 1001)
        self.assertEqual(rc, 0, "exit status %r; stderr: %s" % (rc, self.server.stderr_tail()))

    async def test_sigterm_closes_subscribers_1001(self):
        await self._subscribers_see_1001(signal.SIGTERM)

    async def test_sigint_closes_subscribers_1001(self):
        await self._subscribers_see_1001(signal.SIGINT)

    async def test_shutdown_with_stalled_and_idle_clients(self):
        job = self.server.create_job({"volume": {"shape": [64, 256, 256]},
                                      "params": {"preview_hz": 10, "duration_s": 600}})
        self.server.wait_state(job["job_id"], "running")
        stalled = RawWS(self.server.port, rcvbuf=4096)
        stalled.handshake("/ws/jobs/%s" % job["job_id"])
        idle = RawHTTP(self.server.port)
        idle.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(idle.read_response().status, 200)
        half = RawHTTP(self.server.port)
        half.send(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        silent = RawHTTP(self.server.port)  # connected, never sends a byte
        live = await ws_connect(self.server, job["job_id"])
        await recv_type(live, "preview", timeout=15)
        try:
            # let the stalled client's buffers fill with a few previews
            for _ in range(3):
                await recv_type(live, "preview", timeout=15)
            rc_task = asyncio.create_task(asyncio.to_thread(self.server.stop, signal.SIGTERM))
            code, _ = await wait_closed_code(live, timeout=10)
            rc = await rc_task
            self.assertEqual(code, 1001)
            self.assertEqual(rc, 0, "server did not exit 0 within 10 s with a stalled client "
                                    "(rc=%r); stderr: %s" % (rc, self.server.stderr_tail()))
            self.assertTrue(idle.at_eof(2))
            self.assertTrue(silent.at_eof(2))
        finally:
            for c in (stalled, idle, half, silent):
                c.close()

    def test_new_connections_refused_after_exit(self):
        port = self.server.port
        self.assertEqual(self.server.stop(), 0)
        import socket
        s = socket.socket()
        try:
            with self.assertRaises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
        finally:
            s.close()


if __name__ == "__main__":
    main()
