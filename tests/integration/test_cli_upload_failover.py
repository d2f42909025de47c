#!/usr/bin/python3
"""`cryomamba --server A,B upload` (docs/cli.md, docs/protocol.md §5.8): an
upload fails over between the servers of the list. A server that cannot be
reached before any byte of the upload is durable there is left at once; one
that dies mid-upload (kill -9) is tried a few times, then the upload starts
over on the next server and ends there with the file's sha256; the JSON
says where (`upload.server`) and how often it moved (`upload.failovers`).
The resume record names the server holding the upload, so the same command
resumes there, and a list without that server starts afresh.

Two --role all servers stand for two gateways: the client's behaviour is
the same, and no Redis is needed (test_cluster_volumes.py has the cluster's
side: an upload's progress is its gateway's own). The server killed
mid-upload sits behind Proxy (test_cli_upload.py), which holds what the CLI
sends, so the kill lands with bytes in flight, never after a sleep."""

import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cli_util import free_port, sha256_of  # noqa: E402
from harness import main  # noqa: E402
from test_cli_upload import UploadTestBase  # noqa: E402


class UploadFailoverTest(UploadTestBase):
    def volume_on(self, server, vid):
        return server.get("/v1/volumes/" + vid)

    def test_dead_first_server_is_left_at_once(self):
        b = self.start_server()
        path = self.phantom("t.mrc", "16,64,64", seed=21)
        dead = "http://127.0.0.1:%d" % free_port()
        r = self.cli(None, "--server", "%s,%s" % (dead, b.base), "--json", "upload", path,
                     "--max-retries", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertEqual(vol["upload"]["failovers"], 1, r.stderr)
        self.assertEqual(vol["upload"]["server"].rstrip("/"), b.base.rstrip("/"))
        self.assertEqual(vol["upload"]["bytes_sent"], os.path.getsize(path))
        self.assertEqual(self.volume_on(b, vol["volume_id"]).status, 200)
        self.assertEqual(self.records(), [])

    def test_server_killed_mid_upload_then_the_next_one_takes_it(self):
        self.killed_mid_upload(seed=22)

    def test_parallel_upload_killed_mid_way_starts_over_in_parallel(self):
        vol = self.killed_mid_upload(seed=25, extra=("--parallel", "4"))
        self.assertEqual(vol["upload"]["streams"], 4)

    def killed_mid_upload(self, seed, extra=()):
        a = self.start_server()
        b = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=seed)  # 16 MiB
        size = os.path.getsize(path)
        p = self.proxy(a.port, rate=4 << 20)
        u = self.upload_bg("%s,%s" % (p.url, b.base), path, "--chunk-mib", "1",
                           "--max-retries", "10", *extra)
        durable, _ = u.wait_durable(2 << 20)
        self.assertGreater(durable, 0)
        p.hold()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        p.close()  # connects are refused from now on: A is gone
        self.assertEqual(u.wait(), 0, u.lines[-10:])
        vol = json.loads(u.stdout)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertEqual(vol["upload"]["failovers"], 1, u.lines[-10:])
        self.assertEqual(vol["upload"]["server"].rstrip("/"), b.base.rstrip("/"))
        # Tried A a few times before giving up what it held; then every
        # byte went to B (B knew nothing of the upload).
        self.assertGreaterEqual(vol["upload"]["retries"], 3)
        self.assertGreaterEqual(vol["upload"]["bytes_sent"], size + durable)
        self.assertEqual(self.volume_on(b, vol["volume_id"]).json["sha256"], sha256_of(path))
        self.assert_phases_forward(u.lines)
        self.assertEqual(self.records(), [])
        return vol

    def test_record_names_the_holder_and_resumes_there(self):
        b = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=23)
        size = os.path.getsize(path)
        dead = "http://127.0.0.1:%d" % free_port()
        p = self.proxy(b.port, rate=4 << 20)
        servers = "%s,%s" % (dead, p.url)
        u = self.upload_bg(servers, path, "--chunk-mib", "1")
        durable, _ = self.interrupt(u, p, at_least=1 << 20)
        p.release()
        recs = self.records()
        self.assertEqual(len(recs), 1)
        with open(os.path.join(self.state_home, "cryomamba", "uploads", recs[0])) as f:
            rec = json.load(f)
        self.assertEqual(rec["server"], dead, "the key: the first URL")
        self.assertEqual(rec["holder"], p.url.rstrip("/"), "where the upload is")
        # The same command: resumed on B, where the bytes are.
        r = self.cli(None, "--server", servers, "--json", "upload", path, "--chunk-mib", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertTrue(vol["upload"]["resumed"], r.stderr)
        self.assertGreaterEqual(vol["upload"]["resumed_at"], durable)
        self.assertEqual(vol["upload"]["bytes_sent"], size - vol["upload"]["resumed_at"])
        self.assertEqual(vol["upload"]["failovers"], 0)
        self.assertEqual(vol["sha256"], sha256_of(path))

    def test_list_without_the_holder_starts_afresh(self):
        b = self.start_server()
        c = self.start_server()
        path = self.phantom("big.mrc", "64,256,256", seed=24)
        size = os.path.getsize(path)
        dead = "http://127.0.0.1:%d" % free_port()
        p = self.proxy(b.port, rate=4 << 20)
        u = self.upload_bg("%s,%s" % (dead, p.url), path, "--chunk-mib", "1")
        self.interrupt(u, p, at_least=1 << 20)
        p.release()
        # Same key (the first URL), but B is no longer in the list.
        r = self.cli(None, "--server", "%s,%s" % (dead, c.base), "--json", "upload", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        vol = json.loads(r.stdout)
        self.assertFalse(vol["upload"]["resumed"], r.stderr)
        self.assertEqual(vol["upload"]["server"].rstrip("/"), c.base.rstrip("/"))
        self.assertEqual(vol["upload"]["bytes_sent"], size)
        self.assertEqual(vol["sha256"], sha256_of(path))
        self.assertEqual(self.records(), [])


if __name__ == "__main__":
    main()
