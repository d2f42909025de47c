#!/usr/bin/python3
"""Engines (docs/engines.md, docs/protocol.md §2.2): the registry and
params.engine, the mask model of non-sim engines (previews made by the
server from the engine's mask, the artifact byte-exact), and exec engines:
one process per job under the exec shim, its JSON-lines protocol, its
failures (crash, hang, SIGTERM ignored, garbage, flood, truncated mask),
cancel and kill -9 of the server. The test engines are in engines/; they
synchronise with the test through files and fifos, never through sleeps."""

import asyncio
import errno
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from harness import (EV, Server, assert_error, decode_preview, main,  # noqa: E402
                     read_mrc, recv_msg, ws_connect)

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_ENGINE = os.path.join(HERE, "engines", "test_engine.py")
EXAMPLE = os.path.join(HERE, "..", "..", "engines", "python", "example_threshold.py")
PY = "/usr/bin/python3"


def poll(cond, timeout=EV, what="condition"):
    """Polls cond() until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s not met within %.0f s" % (what, timeout))
        time.sleep(0.02)


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """Pids whose parent is `pid` (zombies included)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class EngineDir:
    """A directory the test engine writes markers into, with its gate."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="cryomamba-engine-")
        os.mkfifo(os.path.join(self.path, "gate"))

    def read(self, name, timeout=EV):
        p = os.path.join(self.path, name)
        poll(lambda: os.path.exists(p), timeout, "marker %s" % name)
        with open(p) as f:
            return f.read()

    def pid(self, name="pid", timeout=EV):
        return int(self.read(name, timeout))

    def open_gate(self, timeout=EV):
        """Lets the engine past one gate (waits until it is at it)."""
        p = os.path.join(self.path, "gate")

        def try_open():
            try:
                return os.open(p, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno == errno.ENXIO:  # nobody reading yet
                    return None
                raise
        fd = poll(try_open, timeout, "the engine at its gate")
        os.write(fd, b"go\n")
        os.close(fd)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def engine_args(*extra):
    return ["--engine", "t=%s %s" % (PY, TEST_ENGINE)] + list(extra)


class RegistryTest(unittest.TestCase):
    def run_server(self, args=(), env=None):
        s = Server(args, env=env).start()
        self.addCleanup(s.cleanup)
        return s

    def test_info_lists_the_builtins_with_params(self):
        s = self.run_server()
        info = s.get("/v1/server/info").json
        self.assertIn("engines", info["capabilities"])
        names = [e["name"] for e in info["engines"]]
        self.assertEqual(names, ["sim", "classic"])
        sim = info["engines"][0]
        self.assertEqual(sim["kind"], "builtin")
        self.assertFalse(sim["needs_volume"])
        self.assertEqual(sim["params"]["pattern"]["enum"], ["random", "blobs"])
        classic = info["engines"][1]
        self.assertEqual(classic["kind"], "builtin")
        self.assertTrue(classic["needs_volume"])
        self.assertEqual(classic["params"]["preview_downsample"]["enum"], ["nearest", "max"])
        seg = classic["params"]["engine_params"]["properties"]
        self.assertEqual(seg["sigma"]["default"], 1.25)
        self.assertEqual(seg["window"], {"type": "integer", "default": 128, "minimum": 4,
                                         "maximum": 512,
                                         "description": seg["window"]["description"]})
        self.assertGreaterEqual(info["limits"]["classic_workers"], 1)

    def test_builtin_engines_picks_which_are_listed(self):
        s = self.run_server(("--builtin-engines", "sim"))
        self.assertEqual([e["name"] for e in s.get("/v1/server/info").json["engines"]],
                         ["sim"])
        r = s.request("POST", "/v1/jobs", body={"params": {"engine": "classic"}})
        assert_error(self, r, 400, "engine_not_enabled")

    def test_sim_is_the_default_and_unchanged_on_the_wire(self):
        s = self.run_server()
        job = s.create_job(duration_s=0)
        self.assertEqual(set(job["params"]),
                         {"preview_hz", "preview_scale", "duration_s", "seed", "pattern"})
        named = s.create_job(duration_s=0, engine="sim")
        self.assertEqual(set(named["params"]), set(job["params"]))
        s.wait_state(named["job_id"], "completed")

    def test_unknown_engine_is_400_naming_the_known_ones(self):
        s = self.run_server()
        r = s.request("POST", "/v1/jobs", body={"params": {"engine": "nnunet"}})
        e = assert_error(self, r, 400, "unknown_engine", retryable=False)
        self.assertIn("nnunet", e["message"])
        self.assertIn("sim", e["message"])
        r = s.request("POST", "/v1/jobs", body={"params": {"engine": "Bad Name"}})
        assert_error(self, r, 400, "invalid_field")
        r = s.request("POST", "/v1/jobs", body={"params": {"engine": 3}})
        assert_error(self, r, 400, "invalid_field")

    def test_builtin_not_enabled_is_400(self):
        s = self.run_server(("--builtin-engines", "none"))
        self.assertEqual(s.get("/v1/server/info").json["engines"], [])
        r = s.request("POST", "/v1/jobs", body={})
        assert_error(self, r, 400, "engine_not_enabled")

    def test_sim_has_no_max_downsampling(self):
        s = self.run_server()
        r = s.request("POST", "/v1/jobs",
                      body={"params": {"preview_downsample": "max"}})
        assert_error(self, r, 400, "invalid_field")
        r = s.request("POST", "/v1/jobs",
                      body={"params": {"preview_downsample": "median"}})
        assert_error(self, r, 400, "invalid_field")

    def test_engine_params_are_bounded(self):
        s = self.run_server()
        big = {"x": "a" * 5000}
        r = s.request("POST", "/v1/jobs", body={"params": {"engine_params": big}})
        e = assert_error(self, r, 400, "invalid_field")
        self.assertIn("engine_params", e["message"])
        r = s.request("POST", "/v1/jobs", body={"params": {"engine_params": [1]}})
        assert_error(self, r, 400, "invalid_field")


class ExecTestBase(unittest.TestCase):
    def run_server(self, *extra, env=None, state_dir=None):
        s = Server(engine_args(*extra), env=env, state_dir=state_dir).start()
        self.addCleanup(s.cleanup)
        return s

    def engine_dir(self):
        d = EngineDir()
        self.addCleanup(d.cleanup)
        return d

    def submit(self, s, mode, d=None, shape=(16, 16, 16), **params):
        ep = dict(params.pop("engine_params", {}), mode=mode)
        if d is not None:
            ep["dir"] = d.path
        body = {"volume": {"shape": list(shape)},
                "params": dict({"engine": "t", "preview_hz": 20,
                                "engine_params": ep}, **params)}
        return s.create_job(body)["job_id"]

    def failed_with(self, s, job_id, code):
        job = s.wait_state(job_id, ("failed", "completed", "cancelled"))
        self.assertEqual(job["state"], "failed", job)
        self.assertEqual(job["errors"][0]["code"], code, job["errors"])
        return job["errors"][0]


def expected_mask(shape, window):
    """What test_engine's mode write leaves after each window (list)."""
    import math
    mask = np.zeros(shape, np.uint8)
    states = []
    n = 0
    for z in range(math.ceil(shape[0] / window)):
        for y in range(math.ceil(shape[1] / window)):
            for x in range(math.ceil(shape[2] / window)):
                n += 1
                lab = 1 + (n % 3)
                mask[z * window:(z + 1) * window, y * window:(y + 1) * window,
                     x * window:(x + 1) * window] = lab if lab < 3 else 255
                states.append(mask.copy())
    return states


def downsample(mask, scale, method):
    if scale == 1:
        return mask
    if method == "nearest":
        return mask[::scale, ::scale, ::scale]
    pz, py, px = [-(-n // scale) for n in mask.shape]
    pad = np.zeros((pz * scale, py * scale, px * scale), np.uint8)
    pad[:mask.shape[0], :mask.shape[1], :mask.shape[2]] = mask
    return pad.reshape(pz, scale, py, scale, px, scale).max(axis=(1, 3, 5))


class MaskModelTest(ExecTestBase):
    """Previews follow the engine's mask window by window; the artifact is
    byte-exact; no preview when nothing changed."""

    def follow(self, scale, method):
        s = self.run_server()
        d = self.engine_dir()
        shape = (12, 16, 20)
        job_id = self.submit(s, "write", d, shape=shape, preview_scale=scale,
                             preview_downsample=method,
                             engine_params={"window": 8})
        states = expected_mask(shape, 8)

        async def go():
            ws = await ws_connect(s, job_id)
            try:
                for k, want in enumerate(states):
                    expect = downsample(want, scale, method)
                    deadline = time.monotonic() + EV
                    while True:
                        msg, _ = await recv_msg(ws, max(0.1, deadline - time.monotonic()))
                        if msg["type"] != "preview":
                            continue
                        arr, _ = decode_preview(self, msg, list(shape), scale)
                        if np.array_equal(arr, expect):
                            break
                        # An older state is fine; a wrong one is not.
                        self.assertTrue(any(np.array_equal(arr, downsample(o, scale, method))
                                            for o in [np.zeros(shape, np.uint8)] + states[:k]),
                                        "preview matches no state of the mask")
                    if k == 0:
                        # The engine waits at its gate: nothing changes, so
                        # no preview comes for several ticks (20 Hz).
                        with self.assertRaises(asyncio.TimeoutError):
                            while True:
                                m, _ = await recv_msg(ws, 0.4)
                                self.assertNotEqual(m["type"], "preview", m)
                    d.open_gate()
                while True:
                    msg, _ = await recv_msg(ws)
                    if msg["type"] == "completed":
                        return msg
            finally:
                await ws.close()
        done = asyncio.run(go())
        final = states[-1]
        self.assertEqual(done["data"]["stats"]["voxels"], final.size)
        counts = {str(v): int((final == v).sum()) for v in np.unique(final)}
        self.assertEqual(done["data"]["stats"]["label_counts"], counts)
        self.assertEqual(done["data"]["stats"]["engine"], {"windows": len(states)})
        r = s.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body[1024:], final.tobytes())  # byte-exact
        header, data, _ = read_mrc(r.body)
        self.assertEqual(data.shape, shape)
        return s, job_id

    def test_previews_follow_the_mask_nearest(self):
        self.follow(1, "nearest")

    def test_previews_follow_the_mask_max_scale_2(self):
        s, job_id = self.follow(2, "max")
        # The final preview survives a restart: rebuilt from the artifact.
        before = s.get("/v1/jobs/%s/preview" % job_id).body
        self.assertEqual(s.stop(), 0)
        s2 = Server(engine_args(), state_dir=s.state_dir).start()
        self.addCleanup(s2.cleanup)
        after = s2.get("/v1/jobs/%s/preview" % job_id)
        self.assertEqual(after.status, 200)
        self.assertEqual(after.body, before)


class FailureTest(ExecTestBase):
    def test_crash_half_way(self):
        s = self.run_server()
        pid = s.proc.pid
        fds = fd_count(pid)
        job_id = self.submit(s, "crash")
        e = self.failed_with(s, job_id, "engine_failed")
        self.assertIn("status 3", e["message"])
        self.assertIn("marker-7f3a", e["message"])  # stderr's tail
        self.assertFalse(e["retryable"])
        poll(lambda: children(pid) == [], what="no child (zombie) left")
        poll(lambda: fd_count(pid) == fds, what="the server's fds back to %d" % fds)
        r = s.get("/v1/jobs/%s/artifacts/mask.mrc" % job_id)
        self.assertEqual(r.status, 409)
        log = os.path.join(s.state_dir, "artifacts", job_id + "-engine.log")
        with open(log) as f:
            self.assertIn("marker-7f3a", f.read())
        mask = os.path.join(s.state_dir, "artifacts", job_id + "-mask.u8.tmp")
        poll(lambda: not os.path.exists(mask), what="the working mask removed")
        s.assert_healthy()

    def test_hang_hits_the_wall_time(self):
        s = self.run_server("--engine-wall-time", "1", "--engine-kill-grace", "1")
        d = self.engine_dir()
        job_id = self.submit(s, "hang", d)
        epid = d.pid()
        e = self.failed_with(s, job_id, "wall_time_exceeded")
        self.assertIn("1 s", e["message"])
        poll(lambda: not alive(epid), what="the hung engine killed")
        self.assertEqual(s.get("/v1/server/info").json["limits"]["engine_wall_time_s"], 1.0)

    def test_sigterm_ignored_then_killed_after_the_grace(self):
        s = self.run_server("--engine-kill-grace", "2")
        d = self.engine_dir()
        job_id = self.submit(s, "ignore_term", d)
        epid = d.pid()
        d.read("ignoring")
        t0 = time.monotonic()
        r = s.request("DELETE", "/v1/jobs/%s" % job_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(s.job(job_id)["state"], "cancelled")
        self.assertTrue(alive(epid), "SIGTERM is ignored: alive until the grace ends")
        poll(lambda: not alive(epid), what="SIGKILL after the grace")
        self.assertGreater(time.monotonic() - t0, 1.0)
        poll(lambda: children(s.proc.pid) == [], what="the shim reaped")

    def test_garbage_fails_with_a_clear_reason_others_unaffected(self):
        s = self.run_server("--max-running", "2")
        other = s.create_job({"volume": {"shape": [16, 16, 16]},
                              "params": {"duration_s": 1, "preview_hz": 10}})["job_id"]
        job_id = self.submit(s, "garbage")
        e = self.failed_with(s, job_id, "engine_protocol")
        self.assertIn("not a JSON object", e["message"])
        done = s.wait_state(other, ("completed", "failed"))
        self.assertEqual(done["state"], "completed")
        self.assertGreater(done["previews_sent"], 1)

    def test_flood_fails_and_the_server_stays_responsive(self):
        s = self.run_server("--engine-max-lines-per-s", "200", "--max-running", "2")
        other = s.create_job({"volume": {"shape": [16, 16, 16]},
                              "params": {"duration_s": 1, "preview_hz": 10}})["job_id"]
        job_id = self.submit(s, "flood")
        e = self.failed_with(s, job_id, "engine_protocol")
        self.assertIn("more than 200 lines a second", e["message"])
        self.assertEqual(s.wait_state(other, ("completed", "failed"))["state"], "completed")
        self.assertEqual(s.get("/v1/server/info").json["limits"]["engine_max_lines_per_s"], 200)
        poll(lambda: children(s.proc.pid) == [], what="the flooder reaped")

    def test_long_line_and_bad_region(self):
        s = self.run_server("--engine-max-line-bytes", "1024")
        e = self.failed_with(s, self.submit(s, "long_line"), "engine_protocol")
        self.assertIn("longer than 1024 bytes", e["message"])
        e = self.failed_with(s, self.submit(s, "bad_region"), "engine_protocol")
        self.assertIn("not a non-empty box within the volume", e["message"])

    def test_truncated_mask_fails(self):
        s = self.run_server()
        e = self.failed_with(s, self.submit(s, "truncate"), "engine_protocol")
        self.assertIn("truncated", e["message"])

    def test_missing_command_fails_clearly(self):
        s = Server(["--engine", "nope=/nonexistent/engine --x"]).start()
        self.addCleanup(s.cleanup)
        job = s.create_job({"params": {"engine": "nope"}})
        e = self.failed_with(s, job["job_id"], "engine_failed")
        self.assertIn("127", e["message"])

    def test_stderr_log_is_bounded_and_its_tail_reported(self):
        s = self.run_server("--engine-log-bytes", "10000")
        job_id = self.submit(s, "stderr_flood", engine_params={"chunks": 500})
        e = self.failed_with(s, job_id, "engine_failed")
        self.assertIn("marker-e2e", e["message"])
        log = os.path.join(s.state_dir, "artifacts", job_id + "-engine.log")
        self.assertLessEqual(os.path.getsize(log), 10000)
        self.assertGreater(os.path.getsize(log), 0)


class ProcessGroupTest(ExecTestBase):
    def test_cancel_kills_the_whole_group(self):
        s = self.run_server("--engine-kill-grace", "5")
        d = self.engine_dir()
        job_id = self.submit(s, "grandchild", d)
        epid, cpid = d.pid(), d.pid("child")
        self.assertTrue(alive(epid) and alive(cpid))
        self.assertEqual(s.request("DELETE", "/v1/jobs/%s" % job_id).status, 200)
        poll(lambda: not alive(epid) and not alive(cpid), what="engine and grandchild gone")
        poll(lambda: children(s.proc.pid) == [], what="no zombie")

    def test_cancel_reaches_a_descendant_that_left_the_group(self):
        # setsid() takes a process out of the job's group: the shim (its
        # subreaper) forwards the SIGTERM and, after the grace, kills it.
        s = self.run_server("--engine-kill-grace", "1")
        d = self.engine_dir()
        job_id = self.submit(s, "escape", d)
        epid, cpid = d.pid(), d.pid("child")
        self.assertNotEqual(os.getpgid(cpid), os.getpgid(epid), "it left the group")
        self.assertEqual(s.request("DELETE", "/v1/jobs/%s" % job_id).status, 200)
        d.read("child-term")  # the SIGTERM reached it
        self.assertTrue(alive(cpid), "it ignores SIGTERM: alive until the grace ends")
        poll(lambda: not alive(epid) and not alive(cpid), what="engine and escapee gone")
        poll(lambda: children(s.proc.pid) == [], what="the shim reaped")
        s.assert_healthy()

    def test_a_descendant_that_left_the_group_ends_with_the_job(self):
        s = self.run_server()
        d = self.engine_dir()
        job_id = self.submit(s, "escape_quick", d)
        cpid = d.pid("child")
        self.assertEqual(s.wait_state(job_id, ("completed", "failed"))["state"], "completed")
        poll(lambda: not alive(cpid), what="the escapee killed when the engine ended")
        poll(lambda: children(s.proc.pid) == [], what="the shim reaped")

    def test_server_killed_9_takes_an_escaped_descendant_along(self):
        s = self.run_server()
        d = self.engine_dir()
        self.submit(s, "escape", d)
        epid, cpid = d.pid(), d.pid("child")
        s.proc.kill()
        s.proc.wait(10)
        poll(lambda: not alive(epid) and not alive(cpid),
             what="the engine and the escapee die with the server")

    def test_server_killed_9_takes_the_engine_along(self):
        s = self.run_server()
        d = self.engine_dir()
        job_id = self.submit(s, "grandchild", d)
        epid, cpid = d.pid(), d.pid("child")
        s.proc.kill()  # SIGKILL: no chance to clean up
        s.proc.wait(10)
        poll(lambda: not alive(epid) and not alive(cpid),
             what="the engine and its child die with the server")
        s2 = Server(engine_args(), state_dir=s.state_dir).start()
        self.addCleanup(s2.cleanup)
        job = s2.wait_state(job_id, "failed")
        self.assertEqual(job["errors"][0]["code"], "interrupted")
        self.assertTrue(job["errors"][0]["retryable"])

    def test_queued_job_of_a_removed_engine_fails_at_restart(self):
        s = self.run_server("--max-running", "1")
        d = self.engine_dir()
        first = self.submit(s, "hang", d)
        second = self.submit(s, "quick")
        d.pid()
        self.assertEqual(s.job(second)["state"], "queued")
        s.proc.kill()
        s.proc.wait(10)
        s2 = Server([], state_dir=s.state_dir).start()  # no engine t any more
        self.addCleanup(s2.cleanup)
        self.assertEqual(s2.wait_state(first, "failed")["errors"][0]["code"], "interrupted")
        job = s2.wait_state(second, "failed")
        self.assertEqual(job["errors"][0]["code"], "engine_unavailable")


class ShutdownAndCliTest(ExecTestBase):
    def test_sigterm_stops_the_engine_and_the_restart_reports_it(self):
        s = self.run_server("--engine-kill-grace", "5")
        d = self.engine_dir()
        job_id = self.submit(s, "hang", d)
        epid = d.pid()
        self.assertEqual(s.stop(), 0, s.stderr_tail())
        self.assertFalse(alive(epid), "the engine outlived the server's exit")
        s2 = Server(engine_args(), state_dir=s.state_dir).start()
        self.addCleanup(s2.cleanup)
        self.assertEqual(s2.wait_state(job_id, "failed")["errors"][0]["code"], "interrupted")

    def test_cli_submit_engine(self):
        import subprocess
        cli = os.environ.get("CRYOMAMBA_CLI_BIN")
        if not cli:
            self.skipTest("CRYOMAMBA_CLI_BIN not set")
        s = self.run_server()
        r = subprocess.run([cli, "--server", s.base, "--json", "submit", "--shape", "8,8,8",
                            "--engine", "t"], capture_output=True, text=True, timeout=EV)
        self.assertEqual(r.returncode, 0, r.stderr)
        job = json.loads(r.stdout)
        self.assertEqual(job["params"]["engine"], "t")
        self.assertEqual(s.wait_state(job["job_id"], ("completed", "failed"))["state"],
                         "completed")
        r = subprocess.run([cli, "--server", s.base, "submit", "--engine", "nope"],
                           capture_output=True, text=True, timeout=EV)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown_engine", r.stderr + r.stdout)


class DevicesTest(ExecTestBase):
    def test_one_job_per_device_exported_as_cuda_visible_devices(self):
        s = self.run_server("--devices", "3,5", "--max-running", "4")
        info = s.get("/v1/server/info").json
        self.assertEqual(info["limits"]["devices"], 2)
        t = [e for e in info["engines"] if e["name"] == "t"][0]
        self.assertTrue(t["uses_devices"])
        dirs = [self.engine_dir() for _ in range(3)]
        jobs = [self.submit(s, "hang", d) for d in dirs]
        reqs = [json.loads(d.read("request")) for d in dirs[:2]]
        self.assertEqual(sorted(r["device"] for r in reqs), ["3", "5"])
        self.assertEqual(s.job(jobs[2])["state"], "queued")  # no free slot
        sim = s.create_job({"params": {"duration_s": 0}})["job_id"]
        self.assertEqual(s.wait_state(sim, ("completed",))["state"], "completed")
        freed = reqs[0]["device"]
        first = jobs[[r["device"] for r in reqs].index(freed)]
        self.assertEqual(s.request("DELETE", "/v1/jobs/%s" % first).status, 200)
        third = json.loads(dirs[2].read("request"))
        self.assertEqual(third["device"], freed)
        env = dirs[2].read("env")
        self.assertEqual(env, freed)


class ConfigTest(ExecTestBase):
    def test_engines_file_env_and_bounds_in_info(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "engines.json")
        with open(path, "w") as f:
            json.dump({"engines": [{"name": "seg", "command": "%s %s" % (PY, EXAMPLE),
                                    "needs_volume": True, "wall_time_s": 600,
                                    "description": "threshold by windows",
                                    "params": {"sigma": {"type": "number"}}}]}, f)
        s = Server(["--engines-file", path],
                   env={"CRYOMAMBA_ENGINE": "t=%s %s" % (PY, TEST_ENGINE),
                        "CRYOMAMBA_ENGINE_KILL_GRACE": "3",
                        "CRYOMAMBA_ENGINE_LOG_BYTES": "4096"}).start()
        self.addCleanup(s.cleanup)
        info = s.get("/v1/server/info").json
        byname = {e["name"]: e for e in info["engines"]}
        self.assertEqual(sorted(byname), ["classic", "seg", "sim", "t"])
        self.assertEqual(byname["seg"]["kind"], "exec")
        self.assertTrue(byname["seg"]["needs_volume"])
        self.assertEqual(byname["seg"]["description"], "threshold by windows")
        self.assertIn("sigma", byname["seg"]["params"])
        self.assertIn("preview_downsample", byname["seg"]["params"])
        self.assertNotIn("command", byname["seg"])  # never shown
        self.assertEqual(info["limits"]["engine_kill_grace_s"], 3.0)
        self.assertEqual(info["limits"]["engine_log_bytes"], 4096)
        r = s.request("POST", "/v1/jobs", body={"params": {"engine": "seg"}})
        assert_error(self, r, 400, "engine_needs_volume")

    def test_bad_engine_flags_refuse_to_start(self):
        for args in (["--engine", "noequals"], ["--engine", "Bad=cmd"],
                     ["--engine", "sim=/bin/true"], ["--devices", "a,a"],
                     ["--engine-max-line-bytes", "10"], ["--engines-file", "/nonexistent"]):
            s = Server(args)
            self.addCleanup(s.cleanup)
            with self.assertRaises(AssertionError, msg=args):
                s.start()
            self.assertEqual(s.proc.wait(10), 2, args)


def upload(s, data):
    """Uploads `data` with tus (one PATCH); returns the volume id."""
    tus = {"Tus-Resumable": "1.0.0"}
    r = s.request("POST", "/v1/uploads", headers=dict(tus, **{"Upload-Length": str(len(data))}))
    assert r.status == 201, r
    r = s.request("PATCH", r.header("Location"), raw=data,
                  headers=dict(tus, **{"Content-Type": "application/offset+octet-stream",
                                       "Upload-Offset": "0"}))
    assert r.status == 204, r
    return r.header("CryoMamba-Volume-Id")


class RequestTest(ExecTestBase):
    def test_the_request_names_volume_mask_params(self):
        import mrcfile
        s = self.run_server()
        d = self.engine_dir()
        vol = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
        with mrcfile.new(os.path.join(s.data_root, "v.mrc")) as m:
            m.set_data(vol)
            m.voxel_size = (3.0, 2.0, 1.0)
        job = s.create_job({"volume_path": "v.mrc",
                            "params": {"engine": "t", "preview_scale": 2,
                                       "engine_params": {"mode": "quick", "dir": d.path,
                                                         "k": [1, 2]}}})
        req = json.loads(d.read("request"))
        s.wait_state(job["job_id"], "completed")
        self.assertEqual(req["protocol"], 1)
        self.assertEqual(req["job_id"], job["job_id"])
        self.assertEqual(req["engine"], "t")
        self.assertEqual(req["volume"]["path"], os.path.join(os.path.realpath(s.data_root), "v.mrc"))
        self.assertEqual(req["volume"]["shape"], [6, 7, 8])
        self.assertEqual(req["mask"]["shape"], [6, 7, 8])
        self.assertEqual(req["mask"]["dtype"], "uint8")
        self.assertTrue(os.path.isabs(req["mask"]["path"]))
        self.assertEqual(req["params"]["preview_scale"], 2)
        self.assertEqual(req["params"]["engine_params"]["k"], [1, 2])
        self.assertIsNone(req["device"])
        self.assertEqual(job["params"]["engine"], "t")
        self.assertEqual(job["params"]["engine_params"]["k"], [1, 2])


class ExampleEngineTest(ExecTestBase):
    def test_threshold_example_segments_a_phantom_by_windows(self):
        try:
            import scipy  # noqa: F401
            import mrcfile
        except ImportError as e:
            self.skipTest("needs python3-scipy (scripts/bootstrap): %s" % e)
        s = Server(["--engine", "thr=%s %s" % (PY, EXAMPLE)]).start()
        self.addCleanup(s.cleanup)
        shape = (40, 48, 56)
        rng = np.random.default_rng(3)
        vol = rng.normal(0, 0.3, shape).astype(np.float32)
        zz, yy, xx = np.indices(shape)
        ball = (zz - 20) ** 2 + (yy - 24) ** 2 + (xx - 28) ** 2 < 10 ** 2
        vol[ball] -= 3.0  # dense: dark
        path = os.path.join(s.data_root, "ph.mrc")
        with mrcfile.new(path) as m:
            m.set_data(vol)
            m.voxel_size = 2.0
        with open(path, "rb") as f:
            volume_id = upload(s, f.read())
        job = s.create_job({"volume_id": volume_id,
                            "params": {"engine": "thr", "preview_hz": 10,
                                       "engine_params": {"window": 24, "overlap": 8,
                                                         "max_blob": 10}}})
        done = s.wait_state(job["job_id"], ("completed", "failed"), timeout=120)
        self.assertEqual(done["state"], "completed", done["errors"])
        # At least the final preview; how many come before it depends on how
        # fast the engine is against preview_hz (the growth itself, preview
        # by preview, is MaskModelTest's, driven step by step).
        self.assertGreaterEqual(done["previews_sent"], 1)
        body = s.get("/v1/jobs/%s/artifacts/mask.mrc" % job["job_id"]).body
        _, mask, vs = read_mrc(body)
        self.assertEqual(vs, (2.0, 2.0, 2.0))
        inside = (mask[ball] > 0).mean()
        outside = (mask[~ball] > 0).mean()
        self.assertGreater(inside, 0.9)
        self.assertLess(outside, 0.05)
        self.assertEqual(done["stats"]["engine"]["windows"], 2 * 2 * 3)


if __name__ == "__main__":
    main()
