"""test_full_disk.py: a mask engine's artifact on a full disk. The state
directory is a small tmpfs (root only: skipped otherwise) that holds the
classic engine's working mask but not also its artifact: the job fails
with insufficient_storage (not "internal"), no partial artifact is left,
the working mask is removed, and the server goes on serving (a smaller job
then completes)."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import mrcfile  # noqa: E402
from harness import Server, main  # noqa: E402


def used_bytes(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class FullDiskTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root")
        self.mnt = tempfile.mkdtemp(prefix="cryomamba-fulldisk-")
        # 64x256x256 voxels: a 4 MiB working mask fits, its 4 MiB artifact
        # does not as well.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", self.mnt],
                       check=True)
        self.addCleanup(os.rmdir, self.mnt)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], check=False)
        self.s = Server(state_dir=os.path.join(self.mnt, "state")).start()
        self.addCleanup(self.s.cleanup)
        self.addCleanup(self.s.stop)

    def volume(self, name, shape):
        rng = np.random.default_rng(5)
        data = rng.normal(0, 1, shape).astype(np.float32)
        data[:, 100:110, :] += 6.0  # a slab: something to segment
        with mrcfile.new(os.path.join(self.s.data_root, name)) as m:
            m.set_data(data)
            m.voxel_size = 10.0

    def test_artifact_on_a_full_disk_fails_the_job_clearly(self):
        self.volume("big.mrc", (64, 256, 256))
        before = used_bytes(self.mnt)
        job = self.s.create_job({"volume_path": "big.mrc"}, engine="classic")
        end = self.s.wait_state(job["job_id"], ("completed", "failed"), timeout=120)
        self.assertEqual(end["state"], "failed", end)
        err = end["errors"][0]
        self.assertEqual(err["code"], "insufficient_storage", err)
        self.assertIn("No space left on device", err["message"])
        self.assertFalse(err["retryable"])  # the operator must free space first
        state = os.path.join(self.mnt, "state")
        leftovers = [f for _, _, fs in os.walk(state) for f in fs
                     if f.endswith(".tmp") or f.endswith("-mask.mrc")]
        self.assertEqual(leftovers, [], "a partial artifact or working mask stayed")
        self.assertLess(used_bytes(self.mnt) - before, 1 << 20, "the disk stays full")
        self.s.assert_healthy()
        self.volume("small.mrc", (16, 64, 64))
        small = self.s.create_job({"volume_path": "small.mrc"}, engine="classic")
        self.assertEqual(self.s.wait_state(small["job_id"], ("completed", "failed"),
                                           timeout=60)["state"], "completed")


if __name__ == "__main__":
    main()
