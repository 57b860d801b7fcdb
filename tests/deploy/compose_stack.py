"""A docker-compose stack of Parley's, run by a deploy test under a project
name of the test's own (its own containers and volumes), with fresh secrets
in an env file and free host ports."""

import os
import secrets
import subprocess
import time

import docker_env
import harness


class ComposeStack:
    """`ports`: the environment variables naming host ports to pick."""

    def __init__(self, log_dir, compose_file, project, ports, extra_env=""):
        self.log_dir = log_dir
        self.compose_file = compose_file
        self.project = project
        self.ports = {name: harness.free_port() for name in ports}
        self.token_secret = secrets.token_hex(32)
        self.admin_key = secrets.token_hex(24)
        self.env_file = os.path.join(log_dir, f"{project}.env")
        with open(self.env_file, "w", encoding="utf-8") as f:
            f.write(f"PARLEY_TOKEN_SECRET={self.token_secret}\n"
                    f"PARLEY_ADMIN_KEY={self.admin_key}\n{extra_env}")
        self.gateway_env_file = os.path.join(log_dir,
                                             f"{project}-gateway.env")
        with open(self.gateway_env_file, "w", encoding="utf-8") as f:
            f.write("PARLEY_LOG_LEVEL=info\n")
        self.env = dict(os.environ, PARLEY_ENV_FILE=self.env_file,
                        PARLEY_GATEWAY_ENV_FILE=self.gateway_env_file,
                        PARLEY_IMAGE_TAG="test",
                        **{k: str(v) for k, v in self.ports.items()})

    def compose(self, *args, timeout=600, check=True):
        argv = ["docker-compose", "-p", self.project, "-f", self.compose_file,
                *args]
        result = subprocess.run(argv, env=self.env, text=True, timeout=timeout,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        with open(os.path.join(self.log_dir, "compose.log"), "a") as log:
            log.write(f"$ {' '.join(argv)}\n{result.stdout}\n")
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed:\n{result.stdout[-3000:]}")
        return result.stdout

    def admin(self, port_variable="PARLEY_ADMIN_PORT"):
        """An AdminClient for the admin API published on that host port."""
        class Target:
            admin_address = f"127.0.0.1:{self.ports[port_variable]}"
            admin_key = self.admin_key
        return harness.AdminClient(Target())

    def container(self, service):
        return self.compose("ps", "-q", service).strip()

    def wait_healthy(self, service, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            cid = self.container(service)
            status = docker_env.run(
                [docker_env.DOCKER, "inspect", "--format",
                 "{{.State.Health.Status}}", cid], check=False).stdout.strip()
            if status == "healthy":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{service} is {status!r} after {timeout}s:\n" +
                    self.compose("logs", "--no-color", service))
            time.sleep(0.5)
