"""test_packages.py: what an install gives a user, run from the installed
tree and nothing else. Two modes (argv[1]):

  destdir  `meson install --destdir` of this build into a scratch root
  deb      scripts/build-deb (dpkg-buildpackage -us -uc -b from a copy of
           the source), each .deb unpacked with `dpkg -x` into a scratch root

Then, in the root: the files are where they belong (and no test, bench or
fuzz program), the installed cryomambad runs against a state dir in a temp
dir and finds its exec shim in the installed layout, the installed CLI (on
the installed libcryomamba, LD_LIBRARY_PATH) uploads a phantom and watches
a classic job and an exec job (the installed Python example) complete, the
man pages render (man -l), the unit passes systemd-analyze verify, the
desktop entry desktop-file-validate, pkg-config finds the library and a
small C program compiles, links and talks to the server through it.

Environment: CRYOMAMBA_SOURCE_ROOT, CRYOMAMBA_BUILD_ROOT (meson sets them).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

MODE = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("destdir", "deb") else "destdir"
os.environ.setdefault("CRYOMAMBA_SERVER_BIN", "/nonexistent")  # harness wants one; set per test
import harness  # noqa: E402

SOURCE_ROOT = os.environ.get("CRYOMAMBA_SOURCE_ROOT",
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_ROOT = os.environ.get("CRYOMAMBA_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
PACKAGES = ("cryomambad", "cryomamba", "cryomamba-viewer", "libcryomamba0", "libcryomamba-dev")
NOT_INSTALLED_RE = re.compile(r"^(test_|bench_|fuzz_)|^(loadgen|floor)$")
STEP_TIMEOUT = 120


def run(cmd, timeout=STEP_TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def build_env():
    """The environment without make's jobserver: a `make test` parent's
    descriptors are not ours to pass on to dpkg-buildpackage's make."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    return env


def meson_version():
    with open(os.path.join(SOURCE_ROOT, "meson.build"), encoding="utf-8") as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


class Layout:
    """Where things are in the root, from the prefix and the dirs (relative
    to it or absolute)."""

    def __init__(self, root, prefix, dirs, cflags=()):
        self.root = root
        self.prefix = prefix
        self.dirs = dirs
        self.cflags = list(cflags)  # what a program on the library needs

    def path(self, key, *rest):
        d = self.dirs[key]
        full = d if d.startswith("/") else os.path.join(self.prefix, d)
        return os.path.join(self.root + full, *rest)


class InstalledTreeMixin:
    layout = None
    tmp = None
    version = meson_version()

    # -- helpers -------------------------------------------------------
    def lib_env(self, **extra):
        env = build_env()
        env["LD_LIBRARY_PATH"] = self.layout.path("libdir")
        env.update(extra)
        return env

    def cli(self, *args, server=None, timeout=STEP_TIMEOUT):
        cmd = [self.layout.path("bindir", "cryomamba")]
        if server is not None:
            cmd += ["--server", server.base]
        return run(cmd + list(args), timeout=timeout, env=self.lib_env())

    def find_one(self, pattern):
        hits = glob.glob(os.path.join(self.layout.root, pattern.lstrip("/")))
        self.assertEqual(len(hits), 1, "%s in the root: %r" % (pattern, hits))
        return hits[0]

    def start_server(self, *args):
        harness.SERVER_BIN = self.layout.path("sbindir", "cryomambad")
        engine = "threshold=exec /usr/bin/python3 %s" % self.layout.path(
            "datadir", "cryomamba", "engines", "python", "example_threshold.py")
        server = harness.Server(args=["--engine", engine, "--log-level", "warn"] + list(args))
        self.addCleanup(server.cleanup)
        return server.start()

    # -- the tests -----------------------------------------------------
    def test_files_are_where_they_belong(self):
        L = self.layout
        for key, name in (("sbindir", "cryomambad"), ("bindir", "cryomamba"),
                          ("bindir", "cryomamba-viewer")):
            self.assertTrue(os.access(L.path(key, name), os.X_OK), name)
        self.assertTrue(os.access(L.path("libexecdir", "cryomamba", "cryomamba-engine-shim"),
                                  os.X_OK))
        self.assertFalse(os.path.exists(L.path("bindir", "cryomamba-engine-shim")))
        real = os.path.realpath(L.path("libdir", "libcryomamba.so.0"))
        self.assertEqual(os.path.basename(real), "libcryomamba.so.%s" % self.version)
        soname = run(["readelf", "-d", real]).stdout
        self.assertIn("Library soname: [libcryomamba.so.0]", soname)
        self.assertTrue(os.path.islink(L.path("libdir", "libcryomamba.so")))
        for h in ("cryomamba.h", "client.h"):
            self.assertTrue(os.path.isfile(L.path("includedir", "cryomamba", h)), h)
        py = L.path("datadir", "cryomamba", "engines", "python")
        self.assertTrue(os.path.isfile(os.path.join(py, "cryomamba_engine.py")))
        self.assertTrue(os.access(os.path.join(py, "example_threshold.py"), os.X_OK))
        self.assertTrue(os.path.isfile(L.path("datadir", "applications",
                                              "org.cryomamba.Viewer.desktop")))
        strays = []
        for dirpath, _dirs, files in os.walk(L.root):
            strays += [os.path.join(dirpath, f) for f in files if NOT_INSTALLED_RE.search(f)]
        self.assertEqual(strays, [], "tests, benchmarks or fuzzers installed")

    def test_installed_server_and_cli_run_jobs_to_completion(self):
        ldd = run(["ldd", self.layout.path("bindir", "cryomamba")], env=self.lib_env()).stdout
        m = re.search(r"libcryomamba\.so\.0 => (\S+)", ldd)
        self.assertIsNotNone(m, ldd)
        self.assertTrue(os.path.realpath(m.group(1)).startswith(self.layout.root), ldd)
        server = self.start_server()
        self.assertTrue(server.state_dir.startswith(tempfile.gettempdir()))
        r = self.cli("health", server=server)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.version, r.stdout)
        phantom = os.path.join(self.tmp, "phantom.mrc")
        r = self.cli("phantom", "--shape", "32,48,48", "--seed", "3", "-o", phantom)
        self.assertEqual(r.returncode, 0, r.stderr)
        for engine in ("classic", "threshold"):
            r = self.cli("--json", "submit", phantom, "--engine", engine, "--watch",
                         "--no-progress", server=server)
            self.assertEqual(r.returncode, 0, "%s: %s %s" % (engine, r.stderr,
                                                             server.stderr_tail()))
            events = [json.loads(line) for line in r.stdout.splitlines()
                      if line.startswith("{")]
            job_id = next(e.get("job_id") for e in events if e.get("job_id"))
            r = self.cli("--json", "status", job_id, server=server)
            self.assertEqual(r.returncode, 0, r.stderr)
            job = json.loads(r.stdout)
            self.assertEqual(job["state"], "completed", job)
            mask = os.path.join(self.tmp, "mask-%s.mrc" % engine)
            r = self.cli("download", job_id, "-o", mask, server=server)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(mask, "rb") as f:
                header = f.read(1024)
            self.assertEqual(header[208:212], b"MAP ", engine)
        self.assertEqual(server.stop(), 0)

    def test_server_without_its_shim_says_where_it_looked(self):
        lone = os.path.join(self.tmp, "lone", "sbin")
        os.makedirs(lone)
        shutil.copy2(self.layout.path("sbindir", "cryomambad"), lone)
        state = os.path.join(self.tmp, "lone", "state")
        r = run([os.path.join(lone, "cryomambad"), "--port", "0", "--state-dir", state,
                 "--engine", "x=exec true"], timeout=30, env=build_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("exec shim", r.stderr)
        self.assertIn(os.path.join(lone, "cryomamba-engine-shim"), r.stderr)
        self.assertIn(os.path.join(lone, "..", "libexec", "cryomamba",
                                   "cryomamba-engine-shim"), r.stderr)

    def test_man_pages_render(self):
        pages = {"man8/cryomambad.8": ("--state-dir", "CRYOMAMBA_STATE_DIR", "SIGTERM"),
                 "man1/cryomamba.1": ("--server", "COMMANDS", "Usage: cryomamba upload"),
                 "man1/cryomamba-viewer.1": ("--server", "--screenshot")}
        for page, needles in pages.items():
            path = self.find_one(os.path.join(self.layout.path("mandir", page)[len(self.layout.root):]) + "*")
            r = run(["man", "--nh", "--nj", "-l", "-P", "cat", path],
                    env=dict(build_env(), MANWIDTH="200", LC_ALL="C.UTF-8"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", page)
            self.assertIn("NAME", r.stdout)
            for n in needles:
                self.assertIn(n, r.stdout, page)

    def test_viewer_help_needs_no_display(self):
        env = self.lib_env()
        for k in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR"):
            env.pop(k, None)
        r = run([self.layout.path("bindir", "cryomamba-viewer"), "--help"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Usage:", r.stdout)
        self.assertIn("--server", r.stdout)

    def test_desktop_entry_is_valid(self):
        r = run(["desktop-file-validate", self.layout.path(
            "datadir", "applications", "org.cryomamba.Viewer.desktop")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), "")

    def test_systemd_unit_verifies(self):
        unit = self.find_one("*/systemd/system/cryomambad.service")
        with open(unit, encoding="utf-8") as f:
            text = f.read()
        execs = re.findall(r"^ExecStart=(\S+)", text, re.M)
        server = self.layout.path("sbindir", "cryomambad")
        self.assertEqual(execs, [server[len(self.layout.root):]])
        for needle in ("DynamicUser=yes", "StateDirectory=cryomamba", "KillMode=mixed",
                       "SystemCallFilter=@system-service", "ProtectSystem=strict"):
            self.assertIn(needle, text)
        # verify wants ExecStart's program to exist: point it into the root.
        local = os.path.join(self.tmp, "cryomambad.service")
        with open(local, "w", encoding="utf-8") as f:
            f.write(text.replace("ExecStart=" + execs[0], "ExecStart=" + server))
        r = run(["systemd-analyze", "verify", local],
                env=dict(build_env(), MANPATH=self.layout.path("mandir")))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", "systemd-analyze verify complained")

    def test_pkg_config_and_a_program_on_the_library(self):
        env = dict(build_env(), PKG_CONFIG_PATH=self.layout.path("libdir", "pkgconfig"),
                   PKG_CONFIG_SYSROOT_DIR=self.layout.root, PKG_CONFIG_LIBDIR="")
        r = run(["pkg-config", "--modversion", "cryomamba"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), self.version)
        flags = run(["pkg-config", "--cflags", "--libs", "cryomamba"], env=env).stdout.split()
        self.assertIn("-I" + self.layout.path("includedir"), flags)
        src = os.path.join(self.tmp, "hello.c")
        with open(src, "w", encoding="utf-8") as f:
            f.write("#include <cryomamba/cryomamba.h>\n#include <stdio.h>\n"
                    "int main(int argc, char** argv) {\n"
                    "  cm_client_options_t o;\n  cm_client_options_init(&o);\n"
                    "  o.server_url = argc > 1 ? argv[1] : NULL;\n"
                    "  cm_client_t* c = NULL;\n"
                    "  if (cm_client_new(&o, &c) != 0) return 2;\n"
                    "  cm_reply_t r;\n  int rc = cm_health_sync(c, &r);\n"
                    "  printf(\"%s %d %d\\n\", cm_version(), rc, r.http_status);\n"
                    "  cm_reply_clear(&r);\n  cm_client_free(c);\n"
                    "  return rc == 0 ? 0 : 1;\n}\n")
        exe = os.path.join(self.tmp, "hello")
        r = run(["cc", "-std=c17", "-Wall", "-Werror"] + self.layout.cflags +
                [src, "-o", exe] + flags, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        server = self.start_server()
        r = run([exe, server.base], env=self.lib_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.split(), [self.version, "0", "200"])


def debian_layout(root):
    arch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    return Layout(root, "/usr", {"bindir": "bin", "sbindir": "sbin", "libdir": "lib/" + arch,
                                 "libexecdir": "libexec", "includedir": "include",
                                 "datadir": "share", "mandir": "share/man"})


class MesonInstallTest(InstalledTreeMixin, unittest.TestCase):
    """meson install --destdir of this build."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-install-")
        root = os.path.join(cls.tmp, "root")
        r = run(["meson", "install", "-C", BUILD_ROOT, "--destdir", root, "--no-rebuild",
                 "--quiet"], timeout=300, env=build_env())
        if r.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise AssertionError("meson install failed: %s%s" % (r.stdout, r.stderr))
        opts = json.loads(run(["meson", "introspect", "--buildoptions", BUILD_ROOT]).stdout)
        dirs = {o["name"]: o["value"] for o in opts
                if o["name"] in ("prefix", "bindir", "sbindir", "libdir", "libexecdir",
                                 "includedir", "datadir", "mandir")}
        # A sanitizer build's library needs its runtime in the program too.
        sanitize = next(o["value"] for o in opts if o["name"] == "b_sanitize")
        cflags = [] if sanitize == "none" else ["-fsanitize=" + sanitize]
        cls.layout = Layout(root, dirs.pop("prefix"), dirs, cflags)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)


class DebPackagesTest(InstalledTreeMixin, unittest.TestCase):
    """dpkg-buildpackage, then dpkg -x of each package."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("dpkg-buildpackage") is None:
            raise unittest.SkipTest("dpkg-buildpackage is not installed (scripts/bootstrap "
                                    "installs dpkg-dev and debhelper)")
        cls.tmp = tempfile.mkdtemp(prefix="cryomamba-deb-")
        cls.out = os.path.join(cls.tmp, "debs")
        r = run(["bash", os.path.join(SOURCE_ROOT, "scripts", "build-deb"), cls.out],
                timeout=600, env=build_env())
        if r.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise AssertionError("build-deb failed:\n%s\n%s" % (r.stdout, r.stderr[-6000:]))
        cls.build_output = r.stdout
        cls.debs = {}
        for deb in glob.glob(os.path.join(cls.out, "*.deb")):
            name = run(["dpkg-deb", "-f", deb, "Package"]).stdout.strip()
            cls.debs[name] = deb
        root = os.path.join(cls.tmp, "root")
        for name in PACKAGES:
            if name in cls.debs:
                subprocess.run(["dpkg", "-x", cls.debs[name], root], check=True, timeout=60)
        cls.layout = debian_layout(root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def contents(self, name):
        out = run(["dpkg-deb", "-c", self.debs[name]]).stdout
        return [line.split()[5].lstrip(".") for line in out.splitlines()
                if not line.split()[5].endswith("/")]

    def test_every_package_is_built(self):
        for name in PACKAGES:
            self.assertIn(name, self.debs)
            version = run(["dpkg-deb", "-f", self.debs[name], "Version"]).stdout.strip()
            self.assertEqual(version, self.version, name)

    def test_packages_split_the_files(self):
        where = {name: self.contents(name) for name in PACKAGES}

        def owner(pattern):
            hits = [n for n, files in where.items() if any(re.search(pattern, f) for f in files)]
            self.assertEqual(len(hits), 1, "%s is in %r" % (pattern, hits))
            return hits[0]

        self.assertEqual(owner(r"^/usr/sbin/cryomambad$"), "cryomambad")
        self.assertEqual(owner(r"/cryomamba-engine-shim$"), "cryomambad")
        self.assertEqual(owner(r"/cryomambad\.service$"), "cryomambad")
        self.assertEqual(owner(r"/cryomamba_engine\.py$"), "cryomambad")
        self.assertEqual(owner(r"^/usr/bin/cryomamba$"), "cryomamba")
        self.assertEqual(owner(r"^/usr/bin/cryomamba-viewer$"), "cryomamba-viewer")
        self.assertEqual(owner(r"\.desktop$"), "cryomamba-viewer")
        self.assertEqual(owner(r"/libcryomamba\.so\.0\.\d"), "libcryomamba0")
        self.assertEqual(owner(r"/libcryomamba\.so$"), "libcryomamba-dev")
        self.assertEqual(owner(r"/include/cryomamba/client\.h$"), "libcryomamba-dev")
        self.assertEqual(owner(r"/cryomamba\.pc$"), "libcryomamba-dev")
        for name in ("cryomamba", "cryomamba-viewer"):
            depends = run(["dpkg-deb", "-f", self.debs[name], "Depends"]).stdout
            self.assertIn("libcryomamba0", depends, name)

    def test_build_deb_refuses_a_changelog_that_is_not_the_meson_version(self):
        tree = os.path.join(self.tmp, "stale")
        os.makedirs(os.path.join(tree, "scripts"))
        os.makedirs(os.path.join(tree, "debian"))
        shutil.copy2(os.path.join(SOURCE_ROOT, "scripts", "build-deb"), tree + "/scripts")
        shutil.copy2(os.path.join(SOURCE_ROOT, "meson.build"), tree)
        with open(os.path.join(SOURCE_ROOT, "debian", "changelog"), encoding="utf-8") as f:
            changelog = f.read()
        stale = changelog.replace("(%s)" % self.version, "(0.0.1)", 1)
        self.assertNotEqual(stale, changelog)
        with open(os.path.join(tree, "debian", "changelog"), "w", encoding="utf-8") as f:
            f.write(stale)
        r = run(["bash", os.path.join(tree, "scripts", "build-deb"),
                 os.path.join(self.tmp, "stale-out")], env=build_env())
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("debian/changelog is at 0.0.1, meson.build at %s" % self.version,
                      r.stderr)
        self.assertEqual(glob.glob(os.path.join(self.tmp, "stale-out", "*.deb")), [])

    def test_package_build_has_no_compiler_warnings(self):
        with open(os.path.join(self.out, "build.log"), encoding="utf-8",
                  errors="replace") as f:
            warnings = [line for line in f if re.search(r":\d+:(\d+:)? warning: ", line)]
        self.assertEqual(warnings, [], "Debian's flags found warnings -Werror would fail")


# One mode per run: its class only.
if MODE == "deb":
    del MesonInstallTest
else:
    del DebPackagesTest

if __name__ == "__main__":
    unittest.main(verbosity=2)
