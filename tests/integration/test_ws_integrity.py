"""test_ws_integrity.py: the WebSocket stream stays well-formed and live when
a slow reader pings while previews flow. Every byte the server sends is
parsed by the strict frame reader in harness.RawWS (unmasked, no RSV bits,
known opcodes), every text frame must be a whole JSON message, and every
pong must come back with its ping's payload, in order -- or the connection
is closed with a documented code. A silent stall fails the test.

Before the fix, a pong's 2-byte header could be written ahead of a queued
preview and its payload after it (a corrupt stream), and a flood of pings in
one write left the connection hanging after ~630 pongs.
"""

import json
import os
import socket
import threading
import time

from harness import EV, RawWS, ServerTestCase, main, upgrade_request

KNOWN_TYPES = {"connected", "state", "progress", "preview", "completed",
               "cancelled", "error", "pong"}


class PingWhileSlow(ServerTestCase):
    SERVER_ARGS = ("--max-running", "4")

    def open_slow(self, job_id, rcvbuf=4096):
        ws = RawWS(self.server.port, timeout=EV, rcvbuf=rcvbuf)
        self.addCleanup(ws.close)
        ws.handshake("/ws/jobs/%s" % job_id)
        return ws

    def collect_pongs(self, ws, expected, deadline_s=60.0):
        """Reads until every expected pong arrived (returns None) or a close
        frame came (returns its code). Asserts every frame is well-formed."""
        want = list(expected)
        deadline = time.monotonic() + deadline_s
        while want:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "stalled: %d pongs never came" % len(want))
            ws.sock.settimeout(min(left, 20.0))
            try:
                fin, op, data = ws.read_frame()
            except socket.timeout:
                self.fail("stalled: no frame for 20 s with %d pongs due" % len(want))
            self.assertTrue(fin, "the server fragments nothing")
            self.assertIn(op, (0x1, 0x2, 0x8, 0x9, 0xA), "unknown opcode %#x" % op)
            if op == 0x1:
                msg = json.loads(data.decode("utf-8"))  # a whole JSON message
                self.assertIn(msg.get("type"), KNOWN_TYPES, msg.get("type"))
            elif op == 0xA:
                self.assertEqual(data, want[0], "pongs out of order or corrupt")
                want.pop(0)
            elif op == 0x9:
                ws.send_frame(0xA, data)
            elif op == 0x8:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return code
        return None

    def test_bursts_of_pings_while_stalled(self):
        job = self.make_job(volume={"shape": [64, 128, 128]}, preview_hz=10,
                            preview_scale=1, duration_s=60)
        ws = self.open_slow(job["job_id"])
        # Stop reading while previews pile up, then ping in bursts.
        time.sleep(3.0)  # the attack: a reader that stalls for 3 s
        sent = []
        for burst in (10, 31, 60):
            frames = []
            for _ in range(burst):
                payload = os.urandom(125)
                sent.append(payload)
                frames.append(payload)
            for p in frames:
                ws.send_frame(0x9, p)
        code = self.collect_pongs(ws, sent)
        self.assertIsNone(code, "closed with %r instead of answering" % code)
        self.server.assert_healthy()

    def test_ten_thousand_pings_in_one_write(self):
        job = self.make_job(volume={"shape": [64, 128, 128]}, preview_hz=10,
                            preview_scale=1, duration_s=60)
        ws = self.open_slow(job["job_id"])
        payloads = [os.urandom(i % 126) for i in range(10000)]
        parts = []
        for p in payloads:
            mk = os.urandom(4)
            parts.append(bytes([0x89, 0x80 | len(p)]) + mk + bytes(
                b ^ mk[i % 4] for i, b in enumerate(p)))
        # 10,000 pings in one write, sent while we read (the server stops
        # reading when its replies back up, so a blocking send could wait
        # on our own reading).
        sender = threading.Thread(target=ws.send_tolerant, args=(b"".join(parts),))
        sender.start()
        self.addCleanup(sender.join, 30)
        code = self.collect_pongs(ws, payloads, deadline_s=90.0)
        # Either every pong, in order, or a documented close (1008: policy).
        self.assertIn(code, (None, 1008), "closed with %r" % code)
        self.server.assert_healthy()


class UpgradeThenVanish(ServerTestCase):
    SERVER_ARGS = ("--max-connections-per-ip", "0")  # 300 connections at once

    def test_clients_that_close_right_after_the_upgrade_request(self):
        # The 101 meets a closed socket, the next write fails and closes the
        # connection while it subscribes: the server once read a NULL job
        # there and crashed.
        job = self.make_job(duration_s=60)
        req = upgrade_request("/ws/jobs/%s" % job["job_id"])
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", self.server.port))
            s.sendall(req)
            s.close()  # the 101 then meets a closed socket: RST
        self.server.assert_healthy()


if __name__ == "__main__":
    main()
