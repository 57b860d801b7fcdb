"""Every binary says what it is: `--version` prints the version from VERSION,
the commit and the build mode and exits 0."""

import os
import re
import subprocess

import harness

BINARIES = ("service/parley-service", "gateway/parley-gateway",
            "tools/parleyctl")


def test_every_binary_prints_its_version_and_exits_0():
    with open(os.path.join(harness.REPO, "VERSION"), encoding="utf-8") as f:
        version = f.read().strip()
    for rel in BINARIES:
        name = os.path.basename(rel)
        out = subprocess.run([harness.bin_path(rel), "--version"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (rel, out.stderr)
        assert re.fullmatch(
            rf"{name} {re.escape(version)} \(commit ([0-9a-f]{{7,40}}"
            rf"(-dirty)?|unknown), (opt|fastbuild|dbg)\)\n",
            out.stdout), (rel, out.stdout)
