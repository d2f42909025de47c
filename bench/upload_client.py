"""upload_client.py: the pieces bench_uploads.py measures with (stdlib only):
MRC2014 input files of random float32 data, a keep-alive tus client that
sends PATCH bodies with sendfile(2) straight from the file (no copy through
Python, so the client is never the bottleneck), and a /proc sampler of a
process's RSS and CPU time.
"""

import hashlib
import http.client
import os
import socket
import struct
import threading
import time

MIB = 1 << 20
HEADER_LEN = 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def mrc_dims(data_bytes):
    """(nx, ny, nz) of a float32 volume of `data_bytes` (a multiple of 1 MiB,
    one 1024x256 plane per MiB; 1024x1024 planes above 4 GiB)."""
    assert data_bytes % MIB == 0 and data_bytes > 0, data_bytes
    mib = data_bytes // MIB
    if mib <= 4096:
        return 1024, 256, mib
    assert mib % 4 == 0 and mib // 4 <= 4096, "size must be a multiple of 4 MiB, <= 16 GiB"
    return 1024, 1024, mib // 4


def mrc_header(nx, ny, nz, mode=2):
    """A little-endian MRC2014 header (1 A voxels, no extended header)."""
    h = bytearray(HEADER_LEN)
    struct.pack_into("<3i", h, 0, nx, ny, nz)
    struct.pack_into("<i", h, 12, mode)
    struct.pack_into("<3i", h, 28, nx, ny, nz)           # mx, my, mz
    struct.pack_into("<3f", h, 40, nx, ny, nz)           # cella: 1 A voxels
    struct.pack_into("<3f", h, 52, 90.0, 90.0, 90.0)     # cellb
    struct.pack_into("<3i", h, 64, 1, 2, 3)              # mapc, mapr, maps
    struct.pack_into("<3f", h, 76, -1.0, 1.0, 0.0)       # dmin, dmax, dmean
    struct.pack_into("<i", h, 88, 1)                     # ispg: one volume
    struct.pack_into("<i", h, 108, 20140)                # nversion
    h[208:212] = b"MAP "
    h[212:214] = b"\x44\x44"                             # little-endian
    struct.pack_into("<f", h, 216, 1.0)                  # rms
    return bytes(h)


def make_random_mrc(path, data_bytes):
    """Writes an MRC of `data_bytes` random bytes after the header (not
    sparse: every block is written), fsyncs it so its writeback cannot
    overlap a measurement, and returns the file's sha256 hex digest."""
    md = hashlib.sha256()
    with open(path, "wb") as f:
        head = mrc_header(*mrc_dims(data_bytes))
        f.write(head)
        md.update(head)
        left = data_bytes
        while left > 0:
            block = os.urandom(min(left, 16 * MIB))
            f.write(block)
            md.update(block)
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    return md.hexdigest()


class TusConn:
    """One keep-alive HTTP/1.1 connection to the server (not thread-safe:
    one per thread). Bodies are bytes or a (file, offset, count) range sent
    with socket.sendfile, at `rate` bytes/s at most when given (1 MiB
    slices on absolute deadlines, as a slower link would deliver them)."""

    def __init__(self, port, timeout=600.0, rate=None):
        self.port = port
        self.timeout = timeout
        self.rate = rate
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, method, path, headers=(), body=b"", file=None, offset=0, count=0):
        """Sends a request (head, then the body); read the answer with recv()."""
        if self.sock is None:
            self._connect()
        length = count if file is not None else len(body)
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1",
                 "Tus-Resumable: 1.0.0"]
        if length or method in ("POST", "PATCH"):
            lines.append("Content-Length: %d" % length)
        lines += ["%s: %s" % kv for kv in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if file is not None and count > 0 and not self.rate:
            sent = self.sock.sendfile(file, offset, count)
            assert sent == count, (sent, count)
        elif file is not None and count > 0:
            t0, sent = time.monotonic(), 0
            while sent < count:
                n = min(MIB, count - sent)
                assert self.sock.sendfile(file, offset + sent, n) == n
                sent += n
                delay = t0 + sent / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        self._method = method

    def recv(self):
        """(status, {lower-case header: value}, body) of the answer."""
        r = http.client.HTTPResponse(self.sock, method=self._method)
        r.begin()
        data = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        if headers.get("connection", "").lower() == "close":
            self.close()
        return r.status, headers, data

    def request(self, *args, **kw):
        self.send(*args, **kw)
        return self.recv()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def tus_extensions(port):
    status, h, _ = TusConn(port, 30).request("OPTIONS", "/v1/uploads")
    assert status == 204, status
    return [e.strip() for e in h.get("tus-extension", "").split(",")]


def proc_cpu_s(pid, tid=None):
    """utime + stime in seconds (/proc/PID/stat fields 14, 15) of the process
    `pid`, or of its thread `tid` (the main thread, the event loop: tid = pid)."""
    path = "/proc/%d/stat" % pid if tid is None else "/proc/%d/task/%d/stat" % (pid, tid)
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_runq_s(pid):
    """(every thread, the main thread) seconds spent runnable but waiting for
    a CPU (/proc/PID/task/TID/schedstat, second field): the cost of other
    load on the machine."""
    total = main = 0.0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                wait = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError):
            continue  # a thread that just ended
        total += wait
        main += wait if int(tid) == pid else 0.0
    return total, main


def proc_status_kib(pid, key):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Samples a process's VmRSS, CPU time, its main thread's CPU time and
    their run-queue waits every `period` s until stop(): self.samples is
    [(monotonic time, rss KiB, cpu s, main thread cpu s, runq s, main runq s)]."""

    def __init__(self, pid, period=0.01):
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.samples = []
        self._stop_ev = threading.Event()

    def run(self):
        while True:
            try:
                self.samples.append((time.monotonic(), proc_status_kib(self.pid, "VmRSS"),
                                     proc_cpu_s(self.pid), proc_cpu_s(self.pid, self.pid))
                                    + proc_runq_s(self.pid))
            except OSError:
                return
            if self._stop_ev.wait(self.period):
                return

    def stop(self):
        self._stop_ev.set()
        self.join()
        return self

    def max_rss_kib(self):
        return max(s[1] for s in self.samples)

    def at(self, t):
        """The last sample taken at or before t."""
        before = [s for s in self.samples if s[0] <= t] or self.samples[:1]
        return before[-1]
