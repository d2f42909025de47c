#!/usr/bin/python3
"""Fan-out (docs/protocol.md §5.5): several subscribers of one job get the
same events (same seq, same bytes); a subscriber that stops reading does not
delay the others nor grow the server's memory; subscriber and connection
limits (4429, 503)."""

import asyncio
import json
import os
import re
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (EV, RSS_SCALE, SPEED_SCALE, RawHTTP, RawWS, ServerTestCase,  # noqa: E402
                     assert_error, decode_preview, main, recv_msg, recv_type,
                     wait_closed_code, ws_connect)

HEAD_RE = re.compile(r'"(type|seq)"\s*:\s*("?)([a-z_0-9]+)\2')


def head_of(raw):
    """(type, seq) of a message without parsing a multi-MB preview."""
    found = dict((k, v) for k, _, v in HEAD_RE.findall(raw[:400]))
    if "type" in found and "seq" in found:
        return found["type"], int(found["seq"])
    m = json.loads(raw)
    return m["type"], m["seq"]


async def reader(ws, seconds, keep_raw=True):
    """Reads for `seconds`; returns [(type, seq, raw or None, t)]."""
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        left = end - loop.time()
        if left <= 0:
            return out
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            return out
        typ, seq = head_of(raw)
        out.append((typ, seq, raw if keep_raw else None, time.monotonic()))


class FanoutTest(ServerTestCase):
    SERVER_ARGS = ("--max-running", "4")

    async def test_identical_events_for_all_subscribers(self):
        shape = [32, 32, 32]
        job = self.make_job({"volume": {"shape": shape},
                             "params": {"preview_hz": 5, "duration_s": 120, "seed": 2}})
        clients = [await ws_connect(self.server, job["job_id"]) for _ in range(4)]
        try:
            for c in clients:
                m, _ = await recv_msg(c)
                self.assertEqual(m["type"], "connected")
            results = await asyncio.gather(*(reader(c, 2.5) for c in clients))
        finally:
            for c in clients:
                await c.close()
        by_seq = {}
        for res in results:
            seqs = [s for _, s, _, _ in res]
            self.assertEqual(seqs, sorted(set(seqs)), "seq not strictly increasing")
            previews = [r for r in res if r[0] == "preview"]
            self.assertGreaterEqual(len(previews), 8, "%d previews in 2.5 s at 5 Hz"
                                    % len(previews))
            for typ, seq, raw, _ in res:
                if typ in ("preview", "progress"):
                    by_seq.setdefault(seq, set()).add(raw)
        shared = 0
        for seq, raws in by_seq.items():
            self.assertEqual(len(raws), 1, "subscribers got different bytes for seq %d" % seq)
        # every preview seq seen by one client (after all joined) is seen by all
        sets = [set(s for t, s, _, _ in res if t == "preview") for res in results]
        inner = set.intersection(*sets)
        shared = len(inner)
        self.assertGreaterEqual(shared, 8)
        lo = max(min(s) for s in sets)
        hi = min(max(s) for s in sets)
        for s in sets:
            self.assertEqual({x for x in s if lo <= x <= hi}, {x for x in inner if lo <= x <= hi},
                             "a fast reader skipped a preview")
        first = json.loads(results[0][0][2]) if results[0] else None
        if first and first["type"] == "preview":
            decode_preview(self, first, shape, 1)

    async def test_paused_reader_does_not_delay_others(self):
        shape = [64, 256, 256]  # 4 MiB previews, ~5.6 MB as base64 JSON
        job = self.make_job({"volume": {"shape": shape},
                             "params": {"preview_hz": 5, "duration_s": 300, "seed": 3}})
        jid = job["job_id"]
        self.server.wait_state(jid, "running")
        # The paused client: handshake, then never read (tiny receive buffer).
        paused = RawWS(self.server.port, rcvbuf=4096)
        paused.handshake("/ws/jobs/%s" % jid)
        self.addCleanup(paused.close)
        rss0 = self.server.rss_kib()
        clients = [await ws_connect(self.server, jid) for _ in range(2)]
        try:
            for c in clients:
                m, _ = await recv_msg(c)
                self.assertEqual(m["type"], "connected")
            results = await asyncio.gather(*(reader(c, 6.0, keep_raw=False) for c in clients))
            rss1 = self.server.rss_kib()
            # the server still answers while the paused client holds frames
            r = await asyncio.to_thread(self.server.get, "/v1/healthz")
            self.assertEqual(r.status, 200)
        finally:
            for c in clients:
                await c.close()
        for res in results:
            times = [t for typ, _, _, t in res if typ == "preview"]
            # 6 s at 5 Hz = 30 previews; a slow Python reader may skip some (latest
            # only), but a reader delayed by the paused one would get far fewer.
            self.assertGreaterEqual(len(times), 15 / SPEED_SCALE,
                                    "%d previews in 6 s at 5 Hz with a paused "
                                    "subscriber" % len(times))
            gaps = [b - a for a, b in zip(times, times[1:])]
            self.assertLess(max(gaps), 1.5 * SPEED_SCALE,
                            "a %.2f s gap between previews" % max(gaps))
            self.assertLess(statistics.median(gaps), 0.35 * SPEED_SCALE)
        # Latest-only: the paused client must not pile up previews in the server.
        grown_mib = (rss1 - rss0) / 1024.0
        print("\n  paused reader: previews per live client in 6 s: %s; server RSS %+.1f MiB"
              % ([sum(1 for r in res if r[0] == "preview") for res in results], grown_mib),
              file=sys.stderr)
        self.assertLess(grown_mib, 100 * RSS_SCALE,
                        "server RSS grew %.0f MiB with one paused subscriber"
                        % grown_mib)
        # The paused client resumes: the stream it gets is well-framed JSON
        # (previews never interleaved mid-frame), and it catches up with the
        # live stream after a few stale previews at most (latest only: not the
        # 30 that streamed while it was paused).
        target = max(seq for res in results for typ, seq, _, _ in res if typ == "preview")
        paused.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        paused.sock.settimeout(EV)
        types, seqs = [], []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            op, data = paused.read_message()
            if op == 0x9:
                paused.send_frame(0xA, data)
                continue
            self.assertEqual(op, 0x1, "unexpected opcode %d" % op)
            m = json.loads(data.decode("utf-8"))
            types.append(m["type"])
            if m["seq"]:
                seqs.append(m["seq"])
            if m["type"] == "preview" and m["seq"] >= target:
                break
        self.assertEqual(types[0], "connected")
        self.assertTrue(seqs and seqs[-1] >= target, "paused client never caught up")
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertLessEqual(types.count("preview"), 5,
                             "%d stale previews were queued for a paused client"
                             % (types.count("preview") - 1))
        paused.send_close(1000)
        self.server.assert_healthy()

    async def test_unread_client_then_new_subscriber(self):
        job = self.make_job({"volume": {"shape": [64, 128, 128]},
                             "params": {"preview_hz": 10, "duration_s": 300}})
        socks = []
        for _ in range(3):
            s = RawWS(self.server.port, rcvbuf=4096)
            s.handshake("/ws/jobs/%s" % job["job_id"])
            socks.append(s)
        try:
            await asyncio.sleep(0)  # nothing to wait for: the next client must just work
            ws = await ws_connect(self.server, job["job_id"])
            try:
                await recv_type(ws, "preview", timeout=EV)
                await recv_type(ws, "preview", timeout=EV)
            finally:
                await ws.close()
        finally:
            for s in socks:
                s.close()  # abrupt close with unread data (RST)
        self.server.assert_healthy()
        ws = await ws_connect(self.server, job["job_id"])
        try:
            await recv_type(ws, "preview", timeout=EV)
        finally:
            await ws.close()


class SubscriberLimitTest(ServerTestCase):
    SERVER_ARGS = ("--max-subscribers-per-job", "2", "--max-running", "2")

    async def test_4429_over_subscriber_limit(self):
        job = self.make_job({"volume": {"shape": [8, 8, 8]},
                             "params": {"preview_hz": 10, "duration_s": 120}})
        other = self.make_job({"volume": {"shape": [8, 8, 8]},
                               "params": {"preview_hz": 10, "duration_s": 120}})
        a = await ws_connect(self.server, job["job_id"])
        b = await ws_connect(self.server, job["job_id"])
        try:
            for c in (a, b):
                self.assertEqual((await recv_msg(c))[0]["type"], "connected")
            c3 = await ws_connect(self.server, job["job_id"])
            code, seen = await wait_closed_code(c3)
            self.assertEqual(code, 4429)
            self.assertFalse(any('"connected"' in s for s in seen if isinstance(s, str)))
            # the limit is per job: another job still accepts subscribers
            o = await ws_connect(self.server, other["job_id"])
            self.assertEqual((await recv_msg(o))[0]["type"], "connected")
            await o.close()
            # the two subscribers are unaffected
            await recv_type(a, "preview")
            await recv_type(b, "preview")
        finally:
            await b.close()
        # a slot frees up once a subscriber leaves
        deadline = time.monotonic() + 10
        while True:
            c4 = await ws_connect(self.server, job["job_id"])
            try:
                m, _ = await recv_msg(c4)
                self.assertEqual(m["type"], "connected")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise AssertionError("subscriber slot never freed after a client left")
                await asyncio.sleep(0.1)
            finally:
                await c4.close()
        await a.close()


class ConnectionLimitTest(ServerTestCase):
    SERVER_ARGS = ("--max-connections", "4")

    def test_503_over_connection_limit(self):
        held = []
        try:
            for _ in range(4):
                c = RawHTTP(self.server.port)
                c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
                held.append(c)
            extra = RawHTTP(self.server.port)
            try:
                extra.send_tolerant(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                r = extra.read_response()
                assert_error(self, r, 503, "too_many_connections", retryable=True)
                self.assertTrue(extra.at_eof(5.0))
            finally:
                extra.close()
            # the held connections still work
            for c in held:
                c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
        finally:
            for c in held:
                c.close()
        # once they are closed, new connections are accepted again
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.server.get("/v1/healthz").status == 200:
                    break
            except (ConnectionError, OSError):
                pass
            self.assertLess(time.monotonic(), deadline, "connection slots never freed")
            time.sleep(0.1)


class PerAddressLimitTest(ServerTestCase):
    SERVER_ARGS = ("--max-connections-per-ip", "3")

    def test_503_over_the_per_address_limit(self):
        held = []
        try:
            for _ in range(3):
                c = RawHTTP(self.server.port)
                c.send(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
                held.append(c)
            extra = RawHTTP(self.server.port)
            try:
                extra.send_tolerant(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                r = extra.read_response()
                err = assert_error(self, r, 503, "too_many_connections", retryable=True)
                self.assertIn("address", err["message"])
                self.assertTrue(extra.at_eof(5.0))
            finally:
                extra.close()
            held[0].send(b"GET /v1/server/info HTTP/1.1\r\nHost: x\r\n\r\n")
            info = json.loads(held[0].read_response().body)
            self.assertEqual(info["limits"]["max_connections_per_ip"], 3)
        finally:
            for c in held:
                c.close()
        # closing them frees the address's slots (the count goes back down)
        deadline = time.monotonic() + 10
        while True:
            conns = [RawHTTP(self.server.port) for _ in range(3)]
            try:
                statuses = []
                for c in conns:
                    c.send_tolerant(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    statuses.append(c.read_response().status)
            finally:
                for c in conns:
                    c.close()
            if statuses == [200, 200, 200]:
                break
            self.assertLess(time.monotonic(), deadline, "slots never freed: %r" % statuses)
            time.sleep(0.1)


if __name__ == "__main__":
    main()
