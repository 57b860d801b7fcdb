"""Fixtures for the end-to-end suite: a real parley-service and
parley-gateway on loopback, users created through the Admin API."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


class Stack:
    def __init__(self, tmp_path, procs):
        self.tmp_path = str(tmp_path)
        self.procs = procs
        self.service = procs.add(harness.start_service(self.tmp_path))
        self.gateway = procs.add(harness.start_gateway(
            self.tmp_path, self.service.link_address))
        self.admin = harness.AdminClient(self.service)
        self.wait_ready()

    def wait_ready(self, timeout=30):
        """Waits for the gateway's upstream stream (its upstream_up line)."""
        self.gateway.wait_for_event("gateway.upstream_up", timeout=timeout)

    def user(self, user_id):
        self.admin.call("CreateUser", id=user_id)
        return user_id

    def token(self, user_id, device=""):
        return harness.mint_token(self.service.token_secret, user_id,
                                  device=device)

    def restart_service(self):
        """SIGKILLs the service and starts it again on the same link address
        and data directory."""
        link = self.service.link_address
        self.service.kill()
        self.admin.close()
        self.service = self.procs.add(harness.start_service(
            self.tmp_path, data_dir=self.service.data_dir,
            link_address=link, name="service-restarted"))
        self.admin = harness.AdminClient(self.service)


@pytest.fixture
def stack(tmp_path, procs):
    s = Stack(tmp_path, procs)
    yield s
    s.admin.close()
