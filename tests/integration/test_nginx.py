"""test_nginx.py: cryomambad behind Debian's nginx, configured from the
shipped contrib/nginx/cryomamba.conf (only its listen port, server_name,
certificate paths and upstream address substituted), terminating TLS with a
CA and certificate this test makes with the openssl CLI. nginx runs as the
test user with its own prefix, pid and temp paths under a temp dir, logging
to stderr. Through it, with verification on: REST with curl (HTTP/2), a tus
PATCH streamed (not spooled whole), WebSocket over wss (python3-websockets),
X-Forwarded-For reaching the server and per-address limits per real client;
TLS refused without the CA or for another host name; and the CLI over
https (skipped while the CLI has no TLS). Skips when nginx or openssl is
missing (scripts/bootstrap installs both)."""

import asyncio
import http.client
import json
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import websockets

from harness import EV, SERVER_BIN, Server, assert_error
from tus_util import make_mrc

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "..", "contrib", "nginx", "cryomamba.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
CLI_BIN = os.environ.get("CRYOMAMBA_CLI_BIN") or os.path.join(
    HERE, "..", "..", "build", "src", "cli", "cryomamba")
TUS = {"Tus-Resumable": "1.0.0"}

MISSING = [n for n, p in (("nginx", NGINX), ("openssl", OPENSSL), ("curl", CURL))
           if not p or not os.access(p, os.X_OK)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60, **kw)


def make_pki(d):
    """A CA and a server certificate it signed (SAN DNS:localhost,
    IP:127.0.0.1), with the openssl CLI; returns the paths."""
    p = {k: os.path.join(d, k) for k in ("ca.key", "ca.pem", "srv.key", "srv.csr",
                                         "srv.pem", "ext.cnf")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [OPENSSL, "req", "-x509"] + ec + ["-keyout", p["ca.key"], "-out", p["ca.pem"],
         "-days", "2", "-subj", "/CN=cryomamba test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [OPENSSL, "req"] + ec + ["-keyout", p["srv.key"], "-out", p["srv.csr"],
         "-subj", "/CN=localhost"],
    ]
    for cmd in steps:
        r = run(cmd)
        assert r.returncode == 0, r.stderr.decode()
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "keyUsage=critical,digitalSignature\n")
    r = run([OPENSSL, "x509", "-req", "-in", p["srv.csr"], "-CA", p["ca.pem"],
             "-CAkey", p["ca.key"], "-CAcreateserial", "-out", p["srv.pem"],
             "-days", "2", "-extfile", p["ext.cnf"]])
    assert r.returncode == 0, r.stderr.decode()
    return p


def shipped_conf():
    with open(CONF) as f:
        return f.read()


def substitute(text, port, upstream_port, cert, key):
    """The shipped file with only its site-specific lines replaced; each
    must be there exactly once (so this tests the file as shipped)."""
    subs = [
        (r"^(\s*)listen 443 ssl http2;$", r"\1listen 127.0.0.1:%d ssl http2;" % port),
        (r"^(\s*)server_name cryomamba\.example\.org;$", r"\1server_name localhost;"),
        (r"^(\s*)ssl_certificate\s+/etc/ssl/cryomamba/fullchain\.pem;$",
         r"\1ssl_certificate %s;" % cert),
        (r"^(\s*)ssl_certificate_key\s+/etc/ssl/cryomamba/privkey\.pem;$",
         r"\1ssl_certificate_key %s;" % key),
        (r"^(\s*)server 127\.0\.0\.1:8000;$", r"\1server 127.0.0.1:%d;" % upstream_port),
    ]
    for pat, rep in subs:
        text, n = re.subn(pat, rep, text, flags=re.M)
        assert n == 1, "%r matched %d times in %s" % (pat, n, CONF)
    return text


def directive(text, name):
    """The values of a directive in the shipped file (comments ignored)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"%s\s+([^;]+);$" % re.escape(name), line)
        if m:
            out.append(m.group(1).strip())
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", v)
    assert m, v
    n = int(m.group(1))
    return n * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def server_default(flag):
    """A cryomambad flag's default, from its --help text."""
    out = run([SERVER_BIN, "--help"]).stdout.decode()
    m = re.search(r"--%s \S+\s+[^\[]*?\(default (\d+(?:\.\d+)?)" % re.escape(flag), out)
    assert m, "no default for --%s in cryomambad --help" % flag
    return float(m.group(1))


class Nginx:
    """nginx with its own prefix, as the test user, in the foreground."""

    def __init__(self, tmp, site_conf, port):
        self.tmp, self.port = tmp, port
        self.prefix = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.prefix, "temp"), exist_ok=True)
        site = os.path.join(self.prefix, "cryomamba.conf")
        with open(site, "w") as f:
            f.write(site_conf)
        user = ""
        if os.geteuid() == 0:
            # As root nginx would run its workers as nobody; stay the test user.
            user = "user %s %s;\n" % (pwd.getpwuid(os.geteuid()).pw_name,
                                      grp.getgrgid(os.getegid()).gr_name)
        t = os.path.join(self.prefix, "temp")
        main = (
            "%sdaemon off;\nworker_processes 1;\npid %s/nginx.pid;\n"
            "error_log stderr notice;\nevents { worker_connections 512; }\n"
            "http {\n  access_log %s/access.log;\n"
            "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n  include %s;\n}\n"
            % (user, self.prefix, self.prefix, t, t, t, t, t, site))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(main)
        self.body_temp = os.path.join(t, "body")
        self.log_path = os.path.join(self.prefix, "stderr.log")
        self.proc = None

    def start(self):
        cmd = [NGINX, "-p", self.prefix, "-c", self.conf, "-e", "stderr"]
        r = run(cmd + ["-t"])
        assert r.returncode == 0, "nginx -t: %s" % r.stderr.decode()
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        deadline = time.monotonic() + EV
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited: %s" % self.stderr_tail())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not listen on %d: %s" % (self.port, self.stderr_tail()))

    def stderr_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.log.close()


@unittest.skipIf(MISSING, "missing %s (scripts/bootstrap installs them)" % ", ".join(MISSING))
class NginxCase(unittest.TestCase):
    SERVER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-nginx-")
        cls.pki = make_pki(cls.tmp)
        cls.server = Server(("--trusted-proxy", "127.0.0.1") + cls.SERVER_ARGS).start()
        cls.port = free_port()
        conf = substitute(shipped_conf(), cls.port, cls.server.port,
                          cls.pki["srv.pem"], cls.pki["srv.key"])
        try:
            cls.nginx = Nginx(cls.tmp, conf, cls.port).start()
        except Exception:
            cls.server.cleanup()
            raise
        cls.base = "https://localhost:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        try:
            cls.nginx.stop()
            rc = cls.server.stop()
            assert rc == 0, "server exit status %r" % rc
        finally:
            cls.server.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def curl(self, *args, ca=True, resolve=True):
        """curl through nginx; returns (status or None, body bytes, rc, stderr)."""
        cmd = [CURL, "-sS", "-o", "-", "-w", "\n%{http_code} %{http_version}"]
        if ca:
            cmd += ["--cacert", self.pki["ca.pem"]]
        if resolve:
            cmd += ["--resolve", "localhost:%d:127.0.0.1" % self.port]
        r = run(cmd + list(args))
        out = r.stdout
        body, _, tail = out.rpartition(b"\n")
        code, _, ver = tail.decode().partition(" ")
        self.last_http_version = ver
        return (int(code) if code.isdigit() and code != "000" else None), body, \
            r.returncode, r.stderr.decode()

    def curl_json(self, *args):
        status, body, rc, err = self.curl(*args)
        self.assertEqual(rc, 0, err)
        return status, json.loads(body)

    def tls_context(self):
        return ssl.create_default_context(cafile=self.pki["ca.pem"])


class ThroughNginxTest(NginxCase):

    def test_rest_info_create_and_get_over_http2(self):
        status, info = self.curl_json("--http2", self.base + "/v1/server/info")
        self.assertEqual(status, 200)
        self.assertEqual(self.last_http_version, "2", "HTTP/2 to nginx")
        self.assertEqual(info["name"], "cryomambad")
        self.assertEqual(info["limits"]["trusted_proxies"], ["127.0.0.1/32"])
        status, job = self.curl_json(
            "-X", "POST", "-H", "Content-Type: application/json",
            "--data", json.dumps({"params": {"duration_s": 0.5}}), self.base + "/v1/jobs")
        self.assertEqual(status, 201, job)
        status, got = self.curl_json(self.base + "/v1/jobs/" + job["job_id"])
        self.assertEqual(status, 200)
        self.assertEqual(got["job_id"], job["job_id"])
        status, err = self.curl_json(self.base + "/v1/jobs/not-a-uuid")
        self.assertEqual(status, 400, "the server's own errors come through")
        self.assertIn("error", err)

    def test_forwarded_for_reaches_the_server(self):
        # nginx appends 127.0.0.1 (a trusted proxy); the client's own claim
        # is believed because its address, 127.0.0.1, is trusted too.
        status, info = self.curl_json("-H", "X-Forwarded-For: 198.51.100.7",
                                      self.base + "/v1/server/info")
        self.assertEqual(info["client_address"], "198.51.100.7")
        status, info = self.curl_json(self.base + "/v1/server/info")
        self.assertEqual(info["client_address"], "127.0.0.1")

    def test_tus_upload_patch_streams_through(self):
        data = make_mrc(shape=(32, 128, 256), seed=3)  # 4 MiB
        self.assertGreater(len(data), 4 << 20)
        path = os.path.join(self.tmp, "vol.mrc")
        with open(path, "wb") as f:
            f.write(data)
        status, body, rc, err = self.curl(
            "-i", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
            "-H", "Upload-Length: %d" % len(data), self.base + "/v1/uploads")
        self.assertEqual((rc, status), (0, 201), err + body.decode("latin-1"))
        loc = re.search(rb"(?im)^location:\s*(\S+)", body).group(1).decode()
        self.assertTrue(loc.startswith("/v1/uploads/"), loc)
        status, body, rc, err = self.curl(
            "-i", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
            "-H", "Content-Type: application/offset+octet-stream",
            "--data-binary", "@" + path, self.base + loc)
        self.assertEqual((rc, status), (0, 204), err + body.decode("latin-1"))
        self.assertRegex(body.decode("latin-1"), r"(?im)^upload-offset:\s*%d\s*$" % len(data))
        vol = re.search(rb"(?im)^cryomamba-volume-id:\s*(\S+)", body)
        self.assertIsNotNone(vol, body)

    def test_patch_body_reaches_the_server_before_it_ends(self):
        """proxy_request_buffering off: the server writes the first MiBs
        while the client still holds the rest back (a spooling proxy would
        send nothing until the whole body were in)."""
        data = make_mrc(shape=(48, 128, 256), seed=4)  # 6 MiB
        total = len(data)
        r = self.server.request("POST", "/v1/uploads",
                                headers=dict(TUS, **{"Upload-Length": str(total)}))
        self.assertEqual(r.status, 201, r)
        loc = r.header("Location")
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=EV)
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        try:
            s.sendall(("PATCH %s HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
                       "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                       "Content-Length: %d\r\n\r\n" % (loc, total)).encode())
            s.sendall(data[:4 << 20])
            uploads = os.path.join(self.server.state_dir, "uploads")
            deadline = time.monotonic() + EV
            written = 0
            while time.monotonic() < deadline:
                written = max([os.path.getsize(os.path.join(uploads, n))
                               for n in os.listdir(uploads)] or [0])
                if written >= 2 << 20:
                    break
                time.sleep(0.05)
            self.assertGreaterEqual(written, 2 << 20,
                                    "the server wrote nothing while the body was incomplete")
            self.assertFalse(os.listdir(self.nginx.body_temp)
                             if os.path.isdir(self.nginx.body_temp) else [],
                             "nginx spooled the body to disk")
            s.sendall(data[4 << 20:])
            head = b""
            while b"\r\n\r\n" not in head:
                got = s.recv(4096)
                if not got:
                    break
                head += got
            self.assertTrue(head.startswith(b"HTTP/1.1 204"), head)
        finally:
            s.close()

    def test_websocket_over_wss(self):
        status, job = self.curl_json(
            "-X", "POST", "-H", "Content-Type: application/json", "--data",
            json.dumps({"params": {"duration_s": 1.5, "preview_hz": 5}}),
            self.base + "/v1/jobs")
        self.assertEqual(status, 201, job)

        async def follow():
            msgs = []
            async with websockets.connect(
                    "wss://localhost:%d/ws/jobs/%s" % (self.port, job["job_id"]),
                    ssl=self.tls_context(), host="127.0.0.1", port=self.port,
                    server_hostname="localhost", max_size=None,
                    open_timeout=EV) as ws:
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), EV))
                    msgs.append(m)
                    if m["type"] in ("completed", "error", "cancelled"):
                        return msgs
        msgs = asyncio.run(follow())
        types = [m["type"] for m in msgs]
        self.assertEqual(types[0], "connected", types)
        self.assertIn("preview", types)
        self.assertEqual(types[-1], "completed", types)

    def test_tls_refused_without_the_ca_or_for_another_name(self):
        status, _, rc, err = self.curl(self.base + "/v1/healthz", ca=False)
        self.assertEqual(rc, 60, "no CA: certificate not trusted (%s)" % err)
        self.assertIsNone(status)
        status, _, rc, err = self.curl(
            "--resolve", "wrong.example:%d:127.0.0.1" % self.port,
            "https://wrong.example:%d/v1/healthz" % self.port)
        self.assertEqual(rc, 60, "a name the certificate does not carry (%s)" % err)
        self.assertIsNone(status)
        status, body, rc, err = self.curl(self.base + "/v1/healthz")
        self.assertEqual((rc, status), (0, 200), err)

    def test_config_timeouts_exceed_the_servers_keepalive(self):
        text = shipped_conf()
        ping = server_default("ws-ping-interval")
        pong = server_default("ws-ping-timeout")
        idle = server_default("http-idle-timeout")
        (read,) = directive(text, "proxy_read_timeout")
        self.assertGreater(seconds(read), ping + pong,
                           "a WebSocket is silent at most ping interval + ping timeout")
        self.assertGreater(seconds(read), 60, "above nginx's default 60 s")
        (keep,) = directive(text, "keepalive_timeout")
        self.assertLess(seconds(keep), idle, "nginx drops idle upstream connections first")
        self.assertEqual(directive(text, "proxy_http_version"), ["1.1"])
        self.assertEqual(directive(text, "proxy_buffering"), ["off"])
        self.assertEqual(directive(text, "proxy_request_buffering"), ["off"])
        self.assertEqual(directive(text, "proxy_set_header"),
                         ["Upgrade $http_upgrade", "Connection $connection_upgrade",
                          "Host $host", "X-Forwarded-For $proxy_add_x_forwarded_for",
                          "X-Forwarded-Proto $scheme"])


class PerClientLimitTest(NginxCase):
    """--max-connections-per-ip 1 behind nginx: each real client (its
    forwarded address) has its one connection, the proxy's do not count."""
    SERVER_ARGS = ("--max-connections-per-ip", "1")

    def test_each_forwarded_client_has_its_own_limit(self):
        status, job = self.curl_json(
            "-X", "POST", "-H", "Content-Type: application/json", "--data",
            json.dumps({"params": {"duration_s": 60}}), self.base + "/v1/jobs")
        self.assertEqual(status, 201, job)
        self.addCleanup(self.server.request, "DELETE", "/v1/jobs/" + job["job_id"])

        async def scenario():
            # Client A holds a WebSocket: its one connection.
            async with websockets.connect(
                    "wss://localhost:%d/ws/jobs/%s" % (self.port, job["job_id"]),
                    ssl=self.tls_context(), host="127.0.0.1", port=self.port,
                    server_hostname="localhost", max_size=None, open_timeout=EV,
                    extra_headers={"X-Forwarded-For": "203.0.113.1"}) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), EV))
                self.assertEqual(first["type"], "connected")
                loop = asyncio.get_running_loop()
                a = await loop.run_in_executor(None, lambda: self.curl(
                    "-H", "X-Forwarded-For: 203.0.113.1", self.base + "/v1/server/info"))
                b = await loop.run_in_executor(None, lambda: self.curl(
                    "-H", "X-Forwarded-For: 203.0.113.2", self.base + "/v1/server/info"))
                return a, b
        a, b = asyncio.run(scenario())
        self.assertEqual(a[0], 503, a)
        self.assertEqual(json.loads(a[1])["error"]["code"], "too_many_connections")
        self.assertEqual(b[0], 200, b)
        self.assertEqual(json.loads(b[1])["client_address"], "203.0.113.2")

        # A's WebSocket closed: A gets in again (poll: the close travels
        # through nginx).
        deadline = time.monotonic() + EV
        while True:
            status, body, rc, err = self.curl("-H", "X-Forwarded-For: 203.0.113.1",
                                              self.base + "/v1/server/info")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200, body)

    def test_sequential_requests_reuse_pooled_connections(self):
        # nginx keeps idle upstream connections; none stays counted for the
        # client whose request it carried last.
        for _ in range(10):
            status, info = self.curl_json("-H", "X-Forwarded-For: 203.0.113.9",
                                          self.base + "/v1/server/info")
            self.assertEqual((status, info["client_address"]), (200, "203.0.113.9"))


@unittest.skipIf(MISSING, "missing %s" % ", ".join(MISSING))
class CliOverHttpsTest(NginxCase):
    """cryomamba submit/watch/download through nginx over https."""

    def setUp(self):
        if not os.access(CLI_BIN, os.X_OK):
            self.skipTest("no cryomamba CLI at %s" % CLI_BIN)

    def cli(self, *args, ca=True):
        url = "https://localhost:%d" % self.port
        trust = ["--cacert", self.pki["ca.pem"]] if ca else []
        return run([CLI_BIN, "--server", url] + trust + ["--json", "-q"] + list(args),
                   env=dict(os.environ))

    def test_an_untrusted_certificate_is_refused_with_a_clear_message(self):
        r = self.cli("health", ca=False)
        self.assertEqual(r.returncode, 11, r.stderr.decode())
        self.assertIn("certificate verify failed", r.stderr.decode())

    def test_submit_watch_download(self):
        r = self.cli("health")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        r = self.cli("submit", "--shape", "16,32,32", "--duration", "1", "--hz", "5")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        job = json.loads(r.stdout)["job_id"]
        r = self.cli("watch", job)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        self.assertTrue(lines, "watch printed nothing")
        out = os.path.join(self.tmp, "mask.mrc")
        r = self.cli("download", job, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(out, "rb") as f:
            self.assertEqual(f.read(212)[208:212], b"MAP ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
