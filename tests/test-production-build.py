#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The install the README describes: `meson setup DIR --prefix=/usr -Dtests=false --buildtype=release` in a
fresh directory builds and installs (DESTDIR) under /usr and /etc, nothing under /usr/local, the D-Bus policy
where Debian's dbus-daemon reads it; -Dtests defaults to false; and the daemon built so has none of the debug
hooks that -Dtests=true compiles in. The hooks are found in the daemon's source (the KKT_ADAPTER_DEBUG_*
variables and the /v1/kkt/debug/ paths), checked present in the test build's daemon and absent from the
production one, and the production daemon ignores the variables and answers 404 on the paths."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kkttest  # noqa: E402
from kkttest import Daemon, TestFailure, check, run_tests  # noqa: E402

SOURCE_ROOT = os.environ.get("KKT_SOURCE_ROOT")
MESON = os.environ.get("KKT_MESON") or shutil.which("meson")
TEST_DAEMON = os.environ.get("KKT_ADAPTERD")

# The README's words, in a directory of our own.
README_SETUP = ["--prefix=/usr", "-Dtests=false", "--buildtype=release"]

build_dir = None
dest_dir = None


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, **kw)


def debug_hooks():
    """The hooks as the source names them: (environment variables, HTTP paths)."""
    env, paths = set(), set()
    adapter = os.path.join(SOURCE_ROOT, "src", "adapter")
    for name in sorted(os.listdir(adapter)):
        if not name.endswith((".c", ".h")):
            continue
        with open(os.path.join(adapter, name), encoding="utf-8") as f:
            text = f.read()
        env.update(re.findall(r'getenv\("(KKT_ADAPTER_DEBUG_[A-Z_]+)"\)', text))
        paths.update(re.findall(r'"(/v1/kkt/debug/[a-z0-9_/]+)"', text))
    return sorted(env), sorted(paths)


def binary_strings(path):
    with open(path, "rb") as f:
        return f.read()


def production_daemon():
    return os.path.join(build_dir, "src", "adapter", "kkt-adapterd")


def test_tests_option_defaults_to_false():
    r = run([MESON, "introspect", "--buildoptions", os.path.join(SOURCE_ROOT, "meson.build")])
    check(r.returncode == 0, f"meson introspect failed:\n{r.stdout}")
    options = {o["name"]: o for o in json.loads(r.stdout)}
    check("tests" in options, "no option 'tests' in meson_options.txt")
    check(options["tests"]["value"] is False, f"-Dtests defaults to {options['tests']['value']}, not false")


def test_readme_setup_builds_and_installs_under_usr():
    r = run([MESON, "setup", build_dir, SOURCE_ROOT] + README_SETUP)
    check(r.returncode == 0, f"meson setup {' '.join(README_SETUP)} failed:\n{r.stdout}")
    with open(os.path.join(build_dir, "config.h")) as f:
        config_h = f.read()
    check(re.search(r"^#define ENABLE_DEBUG_HOOKS 0$", config_h, re.M),
          "config.h of the production build does not say ENABLE_DEBUG_HOOKS 0:\n" + config_h)
    r = run([MESON, "compile", "-C", build_dir])
    check(r.returncode == 0, f"meson compile failed:\n{r.stdout}")
    check(not os.path.exists(os.path.join(build_dir, "tests", "test-store")),
          "the production build built the tests")
    r = run([MESON, "install", "-C", build_dir, "--no-rebuild", "--quiet", "--destdir", dest_dir])
    check(r.returncode == 0, f"meson install failed:\n{r.stdout}")

    tree = sorted(os.path.relpath(os.path.join(d, f), dest_dir)
                  for d, _, files in os.walk(dest_dir) for f in files)
    sys.stderr.write("   installed:\n" + "".join(f"     /{p}\n" for p in tree))
    check(tree, "nothing was installed")
    check(not [p for p in tree if p.startswith("usr/local/")],
          "files installed under /usr/local:\n" + "\n".join(p for p in tree if p.startswith("usr/local/")))
    check("usr/sbin/kkt-adapterd" in tree, "the daemon is not installed as /usr/sbin/kkt-adapterd")
    check("usr/bin/kktctl" in tree, "kktctl is not installed as /usr/bin/kktctl")
    check("etc/kkt-adapter/kkt-adapter.conf" in tree, "the configuration is not /etc/kkt-adapter/kkt-adapter.conf")
    check("usr/share/dbus-1/system.d/org.opticserp.KktAdapter1.conf" in tree,
          "the D-Bus policy is not in /usr/share/dbus-1/system.d, where dbus-daemon reads it")
    outside = [p for p in tree if not p.startswith(("usr/", "etc/", "lib/"))]
    check(not outside, "files installed outside /usr, /etc and /lib:\n" + "\n".join(outside))


def test_hooks_are_found_in_the_source():
    env, paths = debug_hooks()
    sys.stderr.write(f"   hooks: {', '.join(env + paths)}\n")
    check(len(env) >= 3, f"expected the KKT_ADAPTER_DEBUG_* variables in src/adapter, found {env}")
    check(len(paths) >= 2, f"expected the /v1/kkt/debug/ paths in src/adapter, found {paths}")
    # The control: the test build has every one, so their absence below means something.
    if TEST_DAEMON:
        data = binary_strings(TEST_DAEMON)
        for h in env + paths:
            check(h.encode() in data, f"the test build's daemon ({TEST_DAEMON}) has no {h}: is it a -Dtests build?")


def test_production_daemon_has_no_hooks():
    env, paths = debug_hooks()
    data = binary_strings(production_daemon())
    present = [h for h in env + paths if h.encode() in data]
    check(not present, f"the production daemon contains debug hooks: {present}")
    check(b"Debug hook" not in data and b"Debug: injected" not in data,
          "the production daemon contains the debug hooks' messages")

    for args in (["--help"], ["--version"]):
        r = run([production_daemon()] + args)
        check(r.returncode == 0, f"kkt-adapterd {args[0]} exited {r.returncode}:\n{r.stdout}")
        check("debug hook" not in r.stdout.lower() and "KKT_ADAPTER_DEBUG" not in r.stdout,
              f"kkt-adapterd {args[0]} mentions debug hooks:\n{r.stdout}")


def test_production_daemon_ignores_the_hook_variables_and_paths():
    env, paths = debug_hooks()
    # Values that a test build refuses (it does not start): the production daemon must not read them.
    bogus = {name: "bogus" for name in env}
    kkttest.DAEMON = production_daemon()
    with Daemon("[Bus]\nAddress=none\n", env=bogus, name="kkt-prod") as d:
        d.start()
        for path in paths:
            status, _, answer = d.request("POST", path, {"fault": "paper_out"})
            check(status == 404, f"POST {path} answered {status} {answer}, expected 404 in a production build")
        status, _, answer = d.request("GET", "/v1/kkt/buffer/status")
        check(status == 200, f"GET /v1/kkt/buffer/status answered {status} {answer}")
        d.stop_clean()


def test_test_build_daemon_honours_the_hook_variables():
    """The control for the one above: the same bogus value stops a test build's daemon at start."""
    if not TEST_DAEMON:
        return
    kkttest.DAEMON = TEST_DAEMON
    with Daemon("[Bus]\nAddress=none\n", env={"KKT_ADAPTER_DEBUG_SYNCHRONOUS": "bogus"}, name="kkt-test") as d:
        try:
            d.start(timeout=60)
        except TestFailure:
            return
        raise TestFailure("the test build's daemon started with KKT_ADAPTER_DEBUG_SYNCHRONOUS=bogus")


def main():
    global build_dir, dest_dir
    if not SOURCE_ROOT or not MESON:
        sys.stderr.write("SKIP: meson or the source tree is unknown (KKT_MESON, KKT_SOURCE_ROOT)\n")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="kkt-production-")
    build_dir = os.path.join(tmp, "build")
    dest_dir = os.path.join(tmp, "dest")
    try:
        run_tests([
            test_tests_option_defaults_to_false,
            test_readme_setup_builds_and_installs_under_usr,
            test_hooks_are_found_in_the_source,
            test_production_daemon_has_no_hooks,
            test_production_daemon_ignores_the_hook_variables_and_paths,
            test_test_build_daemon_honours_the_hook_variables,
        ])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
