#!/usr/bin/python3
"""Engines (docs/engines.md, docs/protocol.md §2.2): the registry and
params.engine, the mask model of non-sim engines (previews made by the
server from the engine's mask, the artifact byte-exact), and exec engines:
one process per job under the exec shim, its JSON-lines protocol, its
failures (crash, hang, SIGTERM ignored, garbage, flood, truncated mask),
cancel and kill -9 of the server. The test engines are in engines/; they
synchronise with the test through files and fifos, never through sleeps."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, assert_error, main  # noqa: E402


class RegistryTest(unittest.TestCase):
    def run_server(self, args=(), env=None):
        s = Server(args, env=env).start()
        self.addCleanup(s.cleanup)
        return s

    def test_info_lists_sim_with_params(self):
        s = self.run_server()
        info = s.get("/v1/server/info").json
        self.assertIn("engines", info["capabilities"])
        names = [e["name"] for e in info["engines"]]
        self.assertEqual(names, ["sim"])
        sim = info["engines"][0]
        self.assertEqual(sim["kind"], "builtin")
        self.assertFalse(sim["needs_volume"])
        self.assertEqual(sim["params"]["pattern"]["enum"], ["random", "blobs"])

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


if __name__ == "__main__":
    main()
