#!/usr/bin/python3
"""bench_chunk_read.py: what a gateway's read of a job's chunk table costs
Redis and everyone else on it (docs/performance.md, "Reading a chunk table
from Redis"). A private redis-server (Debian's, no persistence) holds one
hash of --fields chunk-sized values (--bytes each), as cm:chunks:<id> does
for a large job; it is read whole once with HGETALL (what gateways did
before --redis-chunk-read-count: the peer) and once in HSCAN pages of
--count (what they do now), while a bystander connection PINGs in a loop,
as another gateway's or worker's commands would. Printed side by side: the
longest single command inside Redis (SLOWLOG), the bystander's worst PING
round trip during the read, the largest reply the reader had to hold, and
the read's wall time.

    /usr/bin/python3 bench/bench_chunk_read.py --fields 200000 --bytes 1024 --count 512
"""

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from redis_util import Redis  # noqa: E402

KEY = b"cm:chunks:bench"


class Conn:
    """A minimal RESP2 client over one socket (no redis-py on Debian's
    python3 here); replies are parsed whole."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb", buffering=1 << 20)
        self.reply_bytes = 0

    def send(self, *args):
        args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(args) +
                          b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))

    def read(self):
        line = self.f.readline()
        self.reply_bytes += len(line)
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            self.reply_bytes += len(data)
            return data[:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest

    def call(self, *args):
        self.reply_bytes = 0
        self.send(*args)
        return self.read()


def fill(redis, fields, size):
    """HSET in pipelined batches through redis-cli --pipe."""
    value = os.urandom(size // 2).hex().encode()[:size]
    batch = 5000
    for start in range(0, fields, batch):
        buf = bytearray()
        for i in range(start, min(fields, start + batch)):
            f = b"%d" % i
            buf += b"*4\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(KEY), KEY, len(f), f, len(value), value)
        subprocess.run(["redis-cli", "-p", str(redis.port), "--pipe"], input=bytes(buf),
                       check=True, capture_output=True)


def bystander_loop(port, measuring, stopping, worst, pings):
    """PINGs back to back on its own connection, in its own process (so the
    reader's parsing never delays it), keeping the worst round trip while
    `measuring` is set."""
    conn = Conn(port)
    while not stopping.is_set():
        t = time.monotonic()
        conn.call("PING")
        rtt = time.monotonic() - t
        if measuring.is_set():
            with worst.get_lock():
                worst.value = max(worst.value, rtt)
                pings.value += 1


class Bystander:
    def __init__(self, port):
        self.measuring, self.stopping = mp.Event(), mp.Event()
        self.worst, self.pings = mp.Value("d", 0.0), mp.Value("i", 0)
        self.proc = mp.Process(target=bystander_loop, daemon=True,
                               args=(port, self.measuring, self.stopping, self.worst,
                                     self.pings))
        self.proc.start()

    def window(self):
        with self.worst.get_lock():
            self.worst.value, self.pings.value = 0.0, 0
        self.measuring.set()

    def close_window(self):
        self.measuring.clear()
        with self.worst.get_lock():
            return self.worst.value, self.pings.value

    def stop(self):
        self.stopping.set()
        self.proc.join(5)


def longest_in_redis(c, verb):
    """The longest logged duration (µs) of commands named `verb`."""
    entries = c.call("SLOWLOG", "GET", "1000000")
    return max((int(e[2]) for e in entries if e[3][0].upper() == verb), default=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", type=int, default=200000, help="chunks in the table")
    ap.add_argument("--bytes", type=int, default=1024, help="bytes per chunk message")
    ap.add_argument("--count", type=int, default=512, help="HSCAN COUNT (the gateway's default)")
    a = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("bench_chunk_read: redis-server not found (scripts/bootstrap installs it)")
    redis = Redis().start()
    try:
        fill(redis, a.fields, a.bytes)
        c = Conn(redis.port)
        c.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.call("CONFIG", "SET", "slowlog-max-len", "1000000")
        by = Bystander(redis.port)
        rows = []

        c.call("SLOWLOG", "RESET")
        by.window()
        t = time.monotonic()
        got = c.call("HGETALL", KEY)
        wall = time.monotonic() - t
        reply = c.reply_bytes
        worst, pings = by.close_window()
        assert len(got) == 2 * a.fields, len(got)
        del got
        rows.append(("HGETALL (one reply; before)", 1, longest_in_redis(c, b"HGETALL"), worst,
                     pings, reply, wall))

        c.call("SLOWLOG", "RESET")
        by.window()
        t = time.monotonic()
        cursor, pages, seen, biggest = b"0", 0, 0, 0
        while True:
            cursor, kv = c.call("HSCAN", KEY, cursor, "COUNT", a.count)
            pages += 1
            seen += len(kv) // 2
            biggest = max(biggest, c.reply_bytes)
            if cursor == b"0":
                break
        wall = time.monotonic() - t
        worst, pings = by.close_window()
        assert seen >= a.fields, seen
        rows.append(("HSCAN COUNT %d (pages; now)" % a.count, pages,
                     longest_in_redis(c, b"HSCAN"), worst, pings, biggest, wall))
        by.stop()

        print("bench_chunk_read: %d chunks x %d B (%.0f MB) in one hash, Redis %s" % (
            a.fields, a.bytes, a.fields * a.bytes / 1e6,
            c.call("INFO", "server").decode().split("redis_version:")[1].split()[0]))
        print("command: /usr/bin/python3 bench/bench_chunk_read.py --fields %d --bytes %d "
              "--count %d" % (a.fields, a.bytes, a.count))
        print("| read | commands | longest command in Redis ms | bystander worst PING ms "
              "(PINGs) | largest reply MB | wall s |")
        print("|---|---|---|---|---|---|")
        for name, n, us, worst, pings, reply, wall in rows:
            print("| %s | %d | %.2f | %.2f (%d) | %.2f | %.2f |" % (
                name, n, us / 1000, worst * 1000, pings, reply / 1e6, wall))
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
