"""A Docker daemon and a local debian:bookworm image for the deploy tests.

CI machines have Debian's docker.io but no running daemon and no reachable
image registry. DockerEnv starts dockerd when none answers (and stops exactly
that process, by PID, afterwards), and makes `debian:bookworm` with
debootstrap from the machine's own Debian mirror when it is not present.
"""

import os
import re
import subprocess
import tempfile
import time

DOCKER = "/usr/bin/docker"  # Debian's client, matching Debian's daemon.
BASE_IMAGE = "debian:bookworm"


def run(argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          **kwargs)


def debian_mirror():
    """The Debian mirror this machine's apt uses."""
    for path in ("/etc/apt/sources.list.d/debian.sources",
                 "/etc/apt/sources.list"):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for line in text.splitlines():
            m = re.match(r"\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(https?://\S+)",
                         line)
            if m and not m.group(1).rstrip("/").endswith("-security"):
                return m.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


class DockerEnv:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.daemon = None

    def daemon_up(self):
        return run([DOCKER, "info"], check=False).returncode == 0

    def start(self):
        if not self.daemon_up():
            log = open(os.path.join(self.log_dir, "dockerd.log"), "w")
            self.daemon = subprocess.Popen(
                ["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not self.daemon_up():
                if self.daemon.poll() is not None:
                    raise RuntimeError(
                        f"dockerd exited ({self.daemon.returncode}); see "
                        f"{log.name}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dockerd not up in 60s; see {log.name}")
                time.sleep(0.2)
        self.ensure_base_image()

    def ensure_base_image(self):
        if run([DOCKER, "image", "inspect", BASE_IMAGE],
               check=False).returncode == 0:
            return
        with tempfile.TemporaryDirectory(prefix="parley-rootfs-") as root:
            run(["debootstrap", "--variant=minbase", "bookworm", root,
                 debian_mirror()])
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."],
                                   stdout=subprocess.PIPE)
            run([DOCKER, "import", "-", BASE_IMAGE], stdin=tar.stdout)
            tar.wait()

    def stop(self):
        """Stops the daemon only if this object started it."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
