#!/usr/bin/python3
"""WebSocket keepalive (docs/protocol.md §5.7): the server pings every
--ws-ping-interval seconds and closes a peer that does not answer within
--ws-ping-timeout with 1001; a peer that answers stays connected."""

import asyncio
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (RawWS, ServerTestCase, main, recv_msg, recv_type,  # noqa: E402
                     ws_connect)


class KeepaliveTest(ServerTestCase):
    SERVER_ARGS = ("--ws-ping-interval", "1", "--ws-ping-timeout", "1", "--max-running", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.job = cls.server.create_job({"volume": {"shape": [4, 4, 4]},
                                         "params": {"preview_hz": 2, "duration_s": 3600}})

    def test_silent_peer_is_closed_1001(self):
        c = RawWS(self.server.port)
        try:
            c.handshake("/ws/jobs/%s" % self.job["job_id"])
            t0 = time.monotonic()
            code, _, seen = c.read_until_close(timeout=20, answer_pings=False)
            elapsed = time.monotonic() - t0
        finally:
            c.close()
        ops = [op for op, _ in seen]
        self.assertIn(0x9, ops, "server sent no RFC 6455 ping")
        self.assertEqual(code, 1001)
        # first ping after ~1 s, closed ~1 s after an unanswered ping
        self.assertTrue(1.5 <= elapsed <= 8.0, "closed after %.1f s" % elapsed)

    def test_answering_raw_peer_stays(self):
        c = RawWS(self.server.port)
        try:
            c.handshake("/ws/jobs/%s" % self.job["job_id"])
            pings = 0
            c.sock.settimeout(1.0)
            end = time.monotonic() + 4.5
            while time.monotonic() < end:
                try:
                    op, data = c.read_message()
                except socket.timeout:
                    continue
                self.assertNotEqual(op, 0x8, "server closed a peer that answers pings")
                if op == 0x9:
                    pings += 1
                    c.send_frame(0xA, data)
            self.assertGreaterEqual(pings, 3, "%d pings in 4.5 s at a 1 s interval" % pings)
            c.send_close(1000)
            code, _, _ = c.read_until_close(timeout=10)
            self.assertEqual(code, 1000)
        finally:
            c.close()

    async def test_library_client_stays_connected(self):
        ws = await ws_connect(self.server, self.job["job_id"])  # answers pings itself
        try:
            await recv_msg(ws)
            t_end = asyncio.get_running_loop().time() + 4.0
            while asyncio.get_running_loop().time() < t_end:
                try:
                    await recv_msg(ws, timeout=0.5)
                except asyncio.TimeoutError:
                    pass
            self.assertTrue(ws.open)
            await ws.send('{"type":"ping"}')
            await recv_type(ws, "pong")
        finally:
            await ws.close()
        self.assertEqual(ws.close_code, 1000)


if __name__ == "__main__":
    main()
