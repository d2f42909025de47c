#!/usr/bin/python3
"""The CLI over https:// and wss:// (client-side TLS, src/net/tls.c): a CA
and certificates made here with the `openssl` CLI, TLS-terminating proxies
(Python ssl + asyncio, forwarding bytes both ways) in front of the real
cryomambad. Through the trusted one with --cacert (or CRYOMAMBA_CACERT):
health, submit, watch --json over wss (its end event), download of the
artifact, and the upload of a phantom (tus PATCHes over TLS). Refused,
with a clear sentence and exit status 11, without retrying: a CA the
client does not trust, a self-signed certificate, a host name and an IP
address the certificate does not list, an expired certificate, an http://
server addressed as https://. --insecure-skip-tls-verify connects to the
untrusted one and warns. A peer that accepts and never answers the
handshake times out with a message (exit 7). A CA file that is missing
fails before any connection (exit 9)."""

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_BIN = os.path.abspath(os.environ.get(
    "CRYOMAMBA_CLI_BIN", os.path.join(HERE, "..", "..", "build", "src", "cli", "cryomamba")))
RUN_TIMEOUT = 120
EXIT_TLS = 11
EXIT_UNREACHABLE = 7
EXIT_IO = 9


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_certs(d):
    """ca.pem signs good (localhost, 127.0.0.1), wrongname (other.example,
    10.9.9.9) and expired; selfsigned signs itself (localhost,
    127.0.0.1)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=CryoMamba test CA", cwd=d)
    sans = {"good": "DNS:localhost,IP:127.0.0.1",
            "wrongname": "DNS:other.example,IP:10.9.9.9",
            "expired": "DNS:localhost,IP:127.0.0.1"}
    for name, san in sans.items():
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name, cwd=d)
        # -days -1: notAfter a day before now, so the certificate expired.
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "-1" if name == "expired" else "2",
                "-extfile", name + ".ext", "-out", name + ".pem", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "selfsigned.key", "-out", "selfsigned.pem",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)


class Proxies:
    """TLS-terminating proxies to one upstream port, on an asyncio loop in a
    thread. add(cert) returns the port of a new one; add_stall() one that
    accepts and never answers (the handshake stalls)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.servers = []
        self.stalled = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))

    async def _start(self, ctx):
        srv = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=ctx,
                                         ssl_handshake_timeout=30)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def _stall_client(self, reader, writer):
        self.stalled.append(writer)  # held open, never answered

    async def _start_stall(self):
        srv = await asyncio.start_server(self._stall_client, "127.0.0.1", 0)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    def add(self, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return self._run(self._start(ctx))

    def add_stall(self):
        return self._run(self._start_stall())

    def close(self):
        async def stop():
            for s in self.servers:
                s.close()
            for w in self.stalled:
                w.close()
        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class TlsCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-tls-")
        make_certs(cls.tmp)
        cls.server = Server().start()
        cls.proxies = Proxies(cls.server.port)
        p = lambda n: os.path.join(cls.tmp, n)  # noqa: E731
        cls.ca = p("ca.pem")
        cls.good = cls.proxies.add(p("good.pem"), p("good.key"))
        cls.wrongname = cls.proxies.add(p("wrongname.pem"), p("wrongname.key"))
        cls.expired = cls.proxies.add(p("expired.pem"), p("expired.key"))
        cls.selfsigned = cls.proxies.add(p("selfsigned.pem"), p("selfsigned.key"))

    @classmethod
    def tearDownClass(cls):
        cls.proxies.close()
        cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, url, *args, env=None, timeout=RUN_TIMEOUT):
        e = dict(os.environ)
        for k in ("CRYOMAMBA_TOKEN", "CRYOMAMBA_CACERT", "CRYOMAMBA_SERVER"):
            e.pop(k, None)
        e["XDG_STATE_HOME"] = os.path.join(self.tmp, "state")
        if env:
            e.update(env)
        return subprocess.run([CLI_BIN, "--server", url] + list(args), capture_output=True,
                              text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL)

    def ok(self, r):
        self.assertEqual(r.returncode, 0, "rc=%d stdout=%r stderr=%r"
                         % (r.returncode, r.stdout, r.stderr))
        return r

    def refused(self, r, *needles, rc=EXIT_TLS):
        self.assertEqual(r.returncode, rc, "rc=%d stdout=%r stderr=%r"
                         % (r.returncode, r.stdout, r.stderr))
        for n in needles:
            self.assertIn(n, r.stderr)

    def url(self, port, host="localhost", scheme="https"):
        return "%s://%s:%d" % (scheme, host, port)

    # -- through the trusted proxy ----------------------------------------
    def test_submit_watch_download_over_tls(self):
        url = self.url(self.good)
        r = self.ok(self.cli(url, "--cacert", self.ca, "--json", "submit", "--shape", "8,16,16",
                             "--duration", "1", "--hz", "5"))
        job_id = json.loads(r.stdout)["job_id"]
        r = self.ok(self.cli(url, "--cacert", self.ca, "--json", "watch", job_id))
        events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        end = events[-1]
        self.assertEqual(end["event"], "end")
        self.assertEqual(end["state"], "completed")
        self.assertGreaterEqual(end["previews"], 1)
        out = os.path.join(self.tmp, "mask-%s.mrc" % job_id)
        self.ok(self.cli(url, "--cacert", self.ca, "download", job_id, "-o", out))
        with open(out, "rb") as f:
            data = f.read()
        self.assertEqual(len(data), 1024 + 8 * 16 * 16)  # MRC header + uint8 voxels
        self.assertEqual(data[208:212], b"MAP ")

    def test_upload_phantom_over_tls(self):
        vol = os.path.join(self.tmp, "phantom.mrc")
        self.ok(self.cli("http://127.0.0.1:1", "phantom", "--shape", "16,48,48", "--seed", "3",
                         "-o", vol))
        # The CA from the environment, an IP literal checked against the SAN.
        r = self.ok(self.cli(self.url(self.good, "127.0.0.1"), "--json", "upload", "--chunk-mib",
                             "1", "--no-progress", vol, env={"CRYOMAMBA_CACERT": self.ca}))
        v = json.loads(r.stdout.splitlines()[-1])
        import hashlib
        with open(vol, "rb") as f:
            self.assertEqual(v["sha256"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(v["shape"], [16, 48, 48])
        r = self.ok(self.cli(self.url(self.good, scheme="wss"), "--cacert", self.ca, "--json",
                             "volumes", "get", v["volume_id"]))
        self.assertEqual(json.loads(r.stdout)["volume_id"], v["volume_id"])

    # -- refusals -----------------------------------------------------------
    def test_unknown_ca_is_refused(self):
        r = self.cli(self.url(self.good), "health")
        self.refused(r, "certificate verify failed", "unable to get local issuer certificate",
                     "--cacert")

    def test_self_signed_is_refused(self):
        r = self.cli(self.url(self.selfsigned), "--cacert", self.ca, "health")
        self.refused(r, "certificate verify failed", "self-signed certificate")

    def test_wrong_host_name_is_refused(self):
        r = self.cli(self.url(self.wrongname), "--cacert", self.ca, "health")
        self.refused(r, "certificate verify failed", "hostname mismatch")
        r = self.cli(self.url(self.wrongname, "127.0.0.1"), "--cacert", self.ca, "health")
        self.refused(r, "certificate verify failed", "IP address mismatch")

    def test_expired_is_refused(self):
        r = self.cli(self.url(self.expired), "--cacert", self.ca, "health")
        self.refused(r, "certificate verify failed", "certificate has expired")

    def test_watch_and_upload_do_not_retry_a_refused_certificate(self):
        job_id = self.server.create_job(shape=[8, 16, 16], duration_s=1)["job_id"]
        t0 = time.monotonic()
        r = self.cli(self.url(self.selfsigned), "--cacert", self.ca, "watch", job_id)
        self.refused(r, "self-signed certificate")
        vol = os.path.join(self.tmp, "small.mrc")
        self.ok(self.cli("http://127.0.0.1:1", "phantom", "--shape", "8,16,16", "-o", vol))
        r = self.cli(self.url(self.selfsigned), "--cacert", self.ca, "upload", "--no-progress",
                     vol)
        self.refused(r, "self-signed certificate")
        # Refused at once, not after the retries' backoff (seconds each).
        self.assertLess(time.monotonic() - t0, 10)

    def test_insecure_skip_verify_connects_and_warns(self):
        r = self.ok(self.cli(self.url(self.selfsigned), "--insecure-skip-tls-verify", "--json",
                             "health"))
        self.assertIn("WARNING: --insecure-skip-tls-verify", r.stderr)
        self.assertEqual(json.loads(r.stdout)["health"]["status"], "ok")
        r = self.ok(self.cli(self.url(self.wrongname, "127.0.0.1"), "--insecure-skip-tls-verify",
                             "health"))
        self.assertIn("WARNING", r.stderr)

    def test_plain_server_as_https_fails_the_handshake(self):
        r = self.cli(self.url(self.server.port, "127.0.0.1"), "--cacert", self.ca, "health")
        self.refused(r, "TLS with", "TLS handshake failed")

    def test_stalled_handshake_times_out(self):
        port = self.proxies.add_stall()
        t0 = time.monotonic()
        r = self.cli(self.url(port), "--cacert", self.ca, "health", timeout=60)
        self.refused(r, "TLS handshake timed out", rc=EXIT_UNREACHABLE)
        self.assertLess(time.monotonic() - t0, 30)  # the 10 s connect timeout

    def test_missing_ca_file(self):
        r = self.cli(self.url(self.good), "--cacert", os.path.join(self.tmp, "nope.pem"),
                     "health")
        self.refused(r, "nope.pem", "CA file", rc=EXIT_IO)


if __name__ == "__main__":
    main()
