"""harness.py: starts the real cryomambad on an ephemeral loopback port and
gives the integration tests clients nobody here wrote (http.client, the
`websockets` library) plus a raw-socket WebSocket client for protocol
violations. Run tests with Debian's /usr/bin/python3 (websockets 10.x,
mrcfile, numpy).

The server binary comes from $CRYOMAMBA_SERVER_BIN, or from the first
command-line argument when it names a file (`python3 test_x.py path/to/bin`).
"""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

import websockets
import websockets.client
import websockets.exceptions

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID4_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
EV = 15.0  # generous default timeout for one expected event
# Bounds on server memory growth are multiplied by this: a sanitizer build's
# shadow memory grows with every byte the server touches (ThreadSanitizer
# maps ~4 bytes per heap byte; make test-tsan sets 5), which says nothing
# about what the server itself holds.
RSS_SCALE = float(os.environ.get("CRYOMAMBA_TEST_RSS_SCALE", "1"))
# Rates the tests expect of the server (previews per second reaching a live
# reader) are divided by this, gaps multiplied: a ThreadSanitizer server runs
# its render and fan-out several times slower (make test-tsan sets 3). It
# scales how fast, never whether: a reader blocked by another gets nothing.
SPEED_SCALE = float(os.environ.get("CRYOMAMBA_TEST_SPEED_SCALE", "1"))
# What a sanitizer prints when it finds something (TSan keeps running after
# a report unless halt_on_error is set; an ASan or UBSan report in the last
# moments of a test would otherwise go unseen once the server is killed).
SANITIZER_RE = re.compile(r"WARNING: ThreadSanitizer:|ERROR: AddressSanitizer:|"
                          r"ERROR: LeakSanitizer:|runtime error: ")


def _server_bin():
    if len(sys.argv) > 1 and os.path.isfile(sys.argv[1]):
        path = sys.argv.pop(1)
        os.environ["CRYOMAMBA_SERVER_BIN"] = os.path.abspath(path)
    path = os.environ.get("CRYOMAMBA_SERVER_BIN")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "src", "server", "cryomambad")
    return os.path.abspath(path)


SERVER_BIN = _server_bin()


class Server:
    """One cryomambad process with its own temporary state and data dirs."""

    def __init__(self, args=(), state_dir=None, data_root=None, env=None):
        self.args = list(args)
        self.tmp = tempfile.mkdtemp(prefix="cryomamba-integ-")
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.data_root = data_root or os.path.join(self.tmp, "data")
        os.makedirs(self.state_dir, exist_ok=True)
        os.makedirs(self.data_root, exist_ok=True)
        self.env = env
        self.proc = None
        self.port = None
        self.stderr_path = None
        self._stdout_lines = queue.Queue()
        self.stdout_seen = []

    # -- lifecycle --------------------------------------------------------
    def start(self):
        if not os.path.isfile(SERVER_BIN):
            raise RuntimeError(
                "server binary not found: %s (set CRYOMAMBA_SERVER_BIN)" % SERVER_BIN)
        cmd = [SERVER_BIN, "--port", "0", "--bind", "127.0.0.1",
               "--state-dir", self.state_dir, "--data-root", self.data_root] + self.args
        self.stderr_path = os.path.join(self.tmp, "stderr-%d.log" % int(time.time() * 1e6))
        errf = open(self.stderr_path, "wb")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf,
                                     stdin=subprocess.DEVNULL, env=env)
        errf.close()
        t = threading.Thread(target=self._pump_stdout, daemon=True)
        t.start()
        deadline = time.monotonic() + START_TIMEOUT
        pat = re.compile(r"listening on http://127\.0\.0\.1:(\d+)\s*$")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("server did not print 'listening on http://127.0.0.1:PORT' "
                                     "within %.0f s; stdout=%r stderr tail=%r"
                                     % (START_TIMEOUT, self.stdout_seen, self.stderr_tail()))
            try:
                line = self._stdout_lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError("server exited with %s before listening; stderr tail=%r"
                                         % (self.proc.returncode, self.stderr_tail()))
                continue
            if line is None:
                raise AssertionError("server closed stdout before listening (rc=%s); stderr=%r"
                                     % (self.proc.wait(5), self.stderr_tail()))
            m = pat.search(line)
            if m:
                self.port = int(m.group(1))
                assert self.port != 0, "server printed port 0"
                return self

    def _pump_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_seen.append(line)
            self._stdout_lines.put(line)
        self._stdout_lines.put(None)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the server and returns its exit status (None on timeout,
        after which it is killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self):
        """Kills the server and removes its files; fails if a sanitizer
        reported anything on the server's stderr meanwhile."""
        self.kill()
        report = self.sanitizer_report()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if report:
            raise AssertionError("the server's sanitizer reported:\n%s" % report)

    def sanitizer_report(self):
        """The server's stderr from its first sanitizer report on (at most
        20000 characters), or None."""
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return None
        m = SANITIZER_RE.search(text)
        return text[max(0, m.start() - 100):m.start() + 20000] if m else None

    def stderr_tail(self, n=4000):
        try:
            with open(self.stderr_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- addresses --------------------------------------------------------
    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def ws_url(self, job_id):
        return "ws://127.0.0.1:%d/ws/jobs/%s" % (self.port, job_id)

    # -- REST -------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, raw=None, timeout=EV):
        """Returns Resp(status, headers, body, json). `body` is JSON-encoded,
        `raw` is sent as is (bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            payload = r.read()
            return Resp(r.status, r.getheaders(), payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def create_job(self, body=None, **params):
        """POST /v1/jobs; params given as keywords go under "params"."""
        if body is None:
            body = {}
        if params:
            body = dict(body)
            body.setdefault("params", {}).update(params)
        r = self.request("POST", "/v1/jobs", body=body)
        if r.status != 201:
            raise AssertionError("create job failed: %s %r" % (r.status, r.body[:500]))
        return r.json

    def job(self, job_id):
        r = self.get("/v1/jobs/%s" % job_id)
        if r.status != 200:
            raise AssertionError("GET job %s: %s %r" % (job_id, r.status, r.body[:300]))
        return r.json

    def wait_state(self, job_id, states, timeout=60.0):
        """Polls GET /v1/jobs/{id} until its state is in `states`."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.job(job_id)
            if last["state"] in states:
                return last
            time.sleep(0.05)
        raise AssertionError("job %s did not reach %s within %.0f s; last=%r"
                             % (job_id, states, timeout, last and last.get("state")))

    def assert_healthy(self):
        r = self.get("/v1/healthz")
        if r.status != 200 or r.json != {"status": "ok"}:
            raise AssertionError("healthz after the test: %s %r" % (r.status, r.body[:200]))
        if self.proc.poll() is not None:
            raise AssertionError("server exited with %s" % self.proc.returncode)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body
        self._json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json(self):
        if self._json is None:
            self._json = json.loads(self.body.decode("utf-8"))
        return self._json

    def __repr__(self):
        return "Resp(%s, %r)" % (self.status, self.body[:300])


def assert_error(tc, resp, status, code, retryable=None):
    """Checks an HTTP error response: status, JSON envelope, code."""
    tc.assertEqual(resp.status, status, "expected HTTP %d %s, got %r" % (status, code, resp))
    ct = resp.header("Content-Type") or ""
    tc.assertTrue(ct.startswith("application/json"), "error Content-Type %r" % ct)
    env = resp.json
    check_error_envelope(tc, env)
    tc.assertEqual(env["error"]["code"], code, env)
    if retryable is not None:
        tc.assertIs(env["error"]["retryable"], retryable, env)
    return env["error"]


def check_error_envelope(tc, env):
    tc.assertIsInstance(env, dict)
    tc.assertEqual(set(env.keys()), {"error"}, env)
    e = env["error"]
    tc.assertIsInstance(e.get("code"), str, env)
    tc.assertIsInstance(e.get("message"), str, env)
    tc.assertTrue(e["message"], env)
    tc.assertIn("hint", e, env)
    tc.assertTrue(e["hint"] is None or isinstance(e["hint"], str), env)
    tc.assertIsInstance(e.get("retryable"), bool, env)


def check_job_object(tc, job):
    for k in ("job_id", "state", "params", "volume", "preview_shape", "progress",
              "previews_sent", "artifacts", "stats", "errors", "created_at",
              "updated_at", "started_at", "finished_at"):
        tc.assertIn(k, job, "job object lacks %r: %r" % (k, job))
    tc.assertRegex(job["job_id"], UUID4_RE)
    tc.assertIn(job["state"], ("queued", "running", "completed", "failed", "cancelled"))
    p = job["params"]
    tc.assertEqual(set(p.keys()) >= {"preview_hz", "preview_scale", "duration_s", "seed",
                                     "pattern"}, True, p)
    v = job["volume"]
    tc.assertEqual(len(v["shape"]), 3)
    tc.assertEqual(len(v["voxel_size"]), 3)
    tc.assertIn("path", v)
    scale = p["preview_scale"]
    tc.assertEqual(job["preview_shape"], [-(-d // scale) for d in v["shape"]])
    tc.assertTrue(0.0 <= job["progress"] <= 1.0)
    tc.assertIsInstance(job["previews_sent"], int)
    tc.assertIsInstance(job["artifacts"], list)
    tc.assertIsInstance(job["errors"], list)
    for k in ("created_at", "updated_at"):
        tc.assertRegex(job[k], TS_RE)
    for k in ("started_at", "finished_at"):
        tc.assertTrue(job[k] is None or TS_RE.match(job[k]), (k, job[k]))


# -- WebSocket with the `websockets` library --------------------------------

async def ws_connect(server, job_id, **kw):
    kw.setdefault("max_size", 2 ** 28)
    kw.setdefault("open_timeout", EV)
    kw.setdefault("close_timeout", 5)
    # ping_interval=None: the library's own keepalive is irrelevant here
    kw.setdefault("ping_interval", None)
    return await websockets.client.connect(server.ws_url(job_id), **kw)


async def recv_msg(ws, timeout=EV):
    """Receives one message and decodes it; returns (dict, raw str)."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    if not isinstance(raw, str):
        raise AssertionError("server sent a binary frame: %r" % raw[:100])
    return json.loads(raw), raw


async def recv_until(ws, pred, timeout=EV, collect=None):
    """Receives messages until pred(msg) is true; returns that message.
    Every message received (including the last) is appended to `collect`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise asyncio.TimeoutError("no matching message within %.1f s" % timeout)
        msg, raw = await recv_msg(ws, left)
        if collect is not None:
            collect.append((msg, raw, time.monotonic()))
        if pred(msg):
            return msg


async def recv_type(ws, typ, timeout=EV, collect=None):
    return await recv_until(ws, lambda m: m["type"] == typ, timeout, collect)


async def wait_closed_code(ws, timeout=EV):
    """Reads (and discards) messages until the connection closes; returns
    (close code, messages seen)."""
    seen = []
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            seen.append(raw)
    except websockets.exceptions.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else ws.close_code
        return code, seen


def check_envelope(tc, msg, job_id=None):
    tc.assertIsInstance(msg, dict)
    tc.assertEqual(set(msg.keys()) >= {"type", "job_id", "seq", "timestamp", "data"}, True, msg)
    tc.assertIsInstance(msg["type"], str)
    tc.assertIsInstance(msg["seq"], int)
    tc.assertGreaterEqual(msg["seq"], 0)
    tc.assertRegex(msg["timestamp"], TS_RE)
    tc.assertIsInstance(msg["data"], dict)
    if job_id is not None:
        tc.assertEqual(msg["job_id"], job_id)
    if msg["type"] in ("connected", "pong"):
        tc.assertEqual(msg["seq"], 0, msg)
    if msg["type"] in ("preview", "progress", "state", "completed", "cancelled"):
        tc.assertGreaterEqual(msg["seq"], 1, {k: msg[k] for k in ("type", "seq")})


def decode_preview(tc, msg, volume_shape=None, scale=None):
    """Validates a preview message's data; returns (numpy uint8 array, shape)."""
    import numpy as np
    d = msg["data"]
    tc.assertEqual(d["dtype"], "uint8")
    shape = d["shape"]
    tc.assertEqual(len(shape), 3)
    s = d["scale"]
    tc.assertEqual(len(s), 3)
    tc.assertTrue(s[0] == s[1] == s[2] >= 1, s)
    if scale is not None:
        tc.assertEqual(s, [scale] * 3)
    if volume_shape is not None:
        tc.assertEqual(shape, [-(-n // s[0]) for n in volume_shape])
    raw = base64.b64decode(d["payload"], validate=True)
    tc.assertEqual(len(raw), shape[0] * shape[1] * shape[2],
                   "payload decodes to %d bytes, shape %r" % (len(raw), shape))
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape), shape


def label_set(arr):
    import numpy as np
    return set(int(v) for v in np.unique(arr))


def read_mrc(data):
    """Parses MRC bytes with mrcfile (strict); returns (header, data, voxel
    size as z, y, x)."""
    import mrcfile
    import numpy as np
    fd, path = tempfile.mkstemp(suffix=".mrc")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with mrcfile.open(path, permissive=False) as m:
            vs = m.voxel_size
            return m.header.copy(), np.array(m.data), (float(vs.z), float(vs.y), float(vs.x))
    finally:
        os.unlink(path)


# -- raw sockets ------------------------------------------------------------

class RawHTTP:
    """A blocking TCP client that reads HTTP/1.1 responses itself, for
    pipelining, malformed requests and upgrades."""

    def __init__(self, port, timeout=EV, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def send_tolerant(self, data):
        """Sends, ignoring a reset/pipe error (the server may answer and
        close before reading everything)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _take_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep)
        out = bytes(self.buf[:i])
        del self.buf[:i + len(sep)]
        return out

    def read_response(self, no_body=False):
        """Returns Resp with lower-cased header list; body read per
        Content-Length or chunked; 101 responses, and any response when
        `no_body` (the answer to a HEAD request), have no body."""
        head = self._take_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        status = int(m.group(1))
        headers = []
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers.append((k.strip(), v.strip()))
        r = Resp(status, headers, b"")
        if no_body or status == 101 or status == 204 or status == 304:
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size_line = self._take_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    # trailers are not expected; consume the final CRLF
                    self._take_until(b"\r\n")
                    break
                body += self.read_exact(size)
                self.read_exact(2)
            r.body = body
        else:
            cl = r.header("Content-Length")
            if cl is None:
                # read until close
                try:
                    while True:
                        self._fill()
                except EOFError:
                    pass
                r.body = bytes(self.buf)
                del self.buf[:]
            else:
                r.body = self.read_exact(int(cl))
        return r

    def at_eof(self, timeout=5.0):
        """True when the server closes the connection (EOF or reset) within
        `timeout` seconds without sending more bytes."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path, key=None, version="13", extra=""):
    key = key if key is not None else ws_key()
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: %s\r\n%s\r\n" % (path, key, version, extra)).encode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


class RawWS(RawHTTP):
    """A raw WebSocket client: completes the handshake itself and then reads
    and writes frames byte by byte, so it can break the protocol on purpose
    and see every control frame."""

    def handshake(self, path, tc=None):
        key = ws_key()
        self.send(upgrade_request(path, key))
        r = self.read_response()
        if r.status != 101:
            raise AssertionError("upgrade refused: %r" % r)
        if r.header("Sec-WebSocket-Accept") != accept_for(key):
            raise AssertionError("bad Sec-WebSocket-Accept %r" % r.header("Sec-WebSocket-Accept"))
        return r

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, length_override=None):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length_override is None else length_override
        hdr = bytes([b0])
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr += bytes([mbit | n])
        elif n < 65536:
            hdr += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([mbit | 127]) + struct.pack("!Q", n)
        if mask:
            mk = os.urandom(4)
            hdr += mk
            payload = bytes(b ^ mk[i % 4] for i, b in enumerate(payload)) \
                if len(payload) < 4096 else _xor_big(payload, mk)
        self.send_tolerant(hdr + payload)

    def send_text(self, text):
        self.send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def read_frame(self):
        """Returns (fin, opcode, payload); server frames must be unmasked."""
        h = self.read_exact(2)
        fin = bool(h[0] & 0x80)
        rsv = (h[0] >> 4) & 0x7
        opcode = h[0] & 0x0F
        masked = bool(h[1] & 0x80)
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        if masked:
            raise AssertionError("server sent a masked frame")
        if rsv:
            raise AssertionError("server set reserved bits %d" % rsv)
        return fin, opcode, self.read_exact(n)

    def read_message(self):
        """Returns (opcode, payload) of the next data message or control
        frame (control frames are returned as they come)."""
        fin, op, data = self.read_frame()
        if op >= 0x8:
            return op, data
        while not fin:
            fin, op2, more = self.read_frame()
            if op2 >= 0x8:
                raise AssertionError("control frame inside a fragmented message not handled")
            data += more
        return op, data

    def read_until_close(self, timeout=EV, answer_pings=True):
        """Reads frames until a close frame; returns (code or None, reason,
        list of (opcode, payload) seen before). Returns code -1 if the TCP
        connection ended without a close frame."""
        self.sock.settimeout(timeout)
        seen = []
        try:
            while True:
                op, data = self.read_message()
                if op == 0x8:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                    return code, data[2:], seen
                if op == 0x9 and answer_pings:
                    self.send_frame(0xA, data)
                seen.append((op, data))
        except (EOFError, ConnectionResetError):
            return -1, b"", seen

    def send_close(self, code=1000):
        self.send_frame(0x8, struct.pack("!H", code))


def _xor_big(payload, mk):
    import numpy as np
    a = np.frombuffer(payload, dtype=np.uint8)
    m = np.frombuffer((mk * (len(payload) // 4 + 1))[:len(payload)], dtype=np.uint8)
    return (a ^ m).tobytes()


# -- test case base ---------------------------------------------------------

class ServerTestCase(unittest.IsolatedAsyncioTestCase):
    """Starts one server for the class (flags in SERVER_ARGS) and stops it at
    the end, asserting a clean exit (status 0 within 10 s of SIGTERM)."""

    SERVER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.SERVER_ARGS).start()

    async def asyncSetUp(self):
        # unittest runs the loop in debug mode; its slow-callback warnings
        # about our own JSON/base64 decoding are noise here
        asyncio.get_running_loop().set_debug(False)

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.server.stop()
            if rc != 0:
                raise AssertionError("server exit status after SIGTERM: %r (stderr tail: %s)"
                                     % (rc, cls.server.stderr_tail(2000)))
        finally:
            cls.server.cleanup()


    def make_job(self, body=None, **params):
        """Creates a job and registers a cleanup that cancels it."""
        job = self.server.create_job(body, **params)
        self.addCleanup(self._cancel_quietly, job["job_id"])
        return job

    def _cancel_quietly(self, job_id):
        try:
            self.server.request("DELETE", "/v1/jobs/%s" % job_id)
        except Exception:
            pass


def new_uuid():
    return str(uuid.uuid4())


def main():
    unittest.main(verbosity=2)
