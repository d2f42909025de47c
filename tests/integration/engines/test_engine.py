#!/usr/bin/python3
"""test_engine: an exec engine for tests/integration/test_engines.py, one
behaviour per engine_params.mode. It synchronises with the test through
files in engine_params.dir: it writes <dir>/pid (its pid, then its
grandchild's for mode grandchild) and, where it waits, blocks reading the
fifo <dir>/gate until the test writes a line. No sleeps.

modes: write (window by window, a gate line per window), crash (half the
mask, a stderr line, exit 3), hang (waits forever), ignore_term (ignores
SIGTERM, waits forever), garbage (a non-JSON line), flood (progress lines
as fast as it can), long_line (one line over any bound), truncate (writes,
then truncates the mask), grandchild (starts a child that waits forever,
then waits), escape / escape_quick (starts a child in a session of its
own that ignores SIGTERM, noting it in <dir>/child-term, then waits /
completes at once), quick (fills the mask with label 1 at once)."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "engines", "python"))

import numpy as np  # noqa: E402

import cryomamba_engine as ce  # noqa: E402


def gate(d):
    with open(os.path.join(d, "gate")) as f:
        return f.readline()


def marker(d, name, text):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))


def wait_forever():
    while True:
        signal.pause()


def main():
    job = ce.Job.from_stdin()
    p = job.engine_params
    mode = p.get("mode", "quick")
    d = p.get("dir")
    if d:
        marker(d, "pid", str(os.getpid()))
        marker(d, "env", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        marker(d, "request", json.dumps(job.request))
    mask = job.mask()
    if mode == "quick":
        mask[:] = 1
        mask.flush()
        job.region((slice(0, job.shape[0]), slice(0, job.shape[1]), slice(0, job.shape[2])))
        return
    if mode == "write":
        n = 0
        step = int(p.get("window", 8))
        wins = list(ce.windows(job.shape, step, 0))
        for win in wins:
            n += 1
            lab = 1 + (n % 3)
            mask[win.core] = lab if lab < 3 else 255
            job.region(win.core, progress=win.fraction, mask=mask)
            job.message("window %d of %d" % (n, len(wins)))
            if p.get("gated", True):
                gate(d)
        job.stats(windows=len(wins))
        return
    if mode == "crash":
        mask[: job.shape[0] // 2] = 1
        mask.flush()
        job.region((slice(0, job.shape[0] // 2), slice(0, job.shape[1]), slice(0, job.shape[2])))
        ce.log("model exploded: CUDA out of memory (marker-7f3a)")
        sys.exit(3)
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "hang":
        wait_forever()
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        marker(d, "ignoring", "1")
        wait_forever()
    if mode == "garbage":
        job.progress(0.1)
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        wait_forever()
    if mode == "flood":
        while True:
            sys.stdout.write('{"type":"progress","progress":0.5}\n')
    if mode == "long_line":
        sys.stdout.write('{"type":"message","message":"' + "x" * (1 << 20) + '"}\n')
        sys.stdout.flush()
        wait_forever()
    if mode == "bad_region":
        job.region([0, 0, 0, job.shape[0] + 1, 1, 1])
        wait_forever()
    if mode == "truncate":
        mask[:] = 1
        mask.flush()
        del mask
        os.truncate(job.mask_path, 10)
        return
    if mode == "grandchild":
        child = subprocess.Popen([sys.executable, "-c",
                                  "import signal\nwhile True: signal.pause()"])
        marker(d, "child", str(child.pid))
        wait_forever()
    if mode in ("escape", "escape_quick"):
        # A child in a session of its own (setsid): out of the job's process
        # group. It notes a SIGTERM and stays; only SIGKILL ends it. Its
        # stdio is not the job's pipes (a daemon's would be /dev/null).
        r, w = os.pipe()
        code = ("import os, signal, sys\n"
                "d, w = sys.argv[1], int(sys.argv[2])\n"
                "def term(*_):\n"
                "    open(os.path.join(d, 'child-term.tmp'), 'w').close()\n"
                "    os.rename(os.path.join(d, 'child-term.tmp'), os.path.join(d, 'child-term'))\n"
                "signal.signal(signal.SIGTERM, term)\n"
                "os.write(w, b'ready')\n"
                "os.close(w)\n"
                "while True: signal.pause()\n")
        child = subprocess.Popen([sys.executable, "-c", code, d, str(w)], pass_fds=(w,),
                                 start_new_session=True, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        os.read(r, 5)  # its SIGTERM handler is in place
        os.close(r)
        marker(d, "child", str(child.pid))
        if mode == "escape":
            wait_forever()
        mask[:] = 1
        mask.flush()
        job.region((slice(0, job.shape[0]), slice(0, job.shape[1]), slice(0, job.shape[2])))
        return
    if mode == "stderr_flood":
        chunk = "e" * 4095 + "\n"
        for _ in range(int(p.get("chunks", 1000))):
            sys.stderr.write(chunk)
        sys.stderr.write("last words (marker-e2e)\n")
        sys.stderr.flush()
        sys.exit(1)
    raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
