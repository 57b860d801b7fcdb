"""The compose project's name is pinned: docker-compose, run the way
deploy/README.md runs it, names the project "parley" whatever the checkout's
folder is called, so the volumes are the ones the recipes name. (With the
folder's name, "deploy", a recipe naming parley_parley-data once backed up a
new, empty volume and said nothing.)

Needs Debian's docker-compose (1.29, Python), whose own code computes the
name; no Docker daemon.
"""

import os
import re
import shutil

import pytest

import harness

command = pytest.importorskip("compose.cli.command")
environment = pytest.importorskip("compose.config.environment")
yaml = pytest.importorskip("yaml")  # PyYAML, which docker-compose needs.

README = os.path.join(harness.REPO, "deploy", "README.md")


def _project_name(compose_file):
    """The name `docker-compose -f compose_file ...` gives the project."""
    project_dir = command.get_project_dir({"--file": [compose_file],
                                           "--project-directory": None})
    env = environment.Environment.from_env_file(project_dir)
    return command.get_project_name(project_dir, None, env)


def test_the_project_is_named_parley_in_any_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "some-other-name"
    shutil.copytree(os.path.join(harness.REPO, "deploy"), checkout / "deploy")
    assert _project_name(str(checkout / "deploy" / "docker-compose.yml")) == \
        "parley"
    monkeypatch.chdir(checkout)
    assert _project_name("deploy/docker-compose.yml") == "parley"


def test_the_readme_names_the_volumes_compose_creates():
    with open(os.path.join(harness.REPO, "deploy", "docker-compose.yml"),
              encoding="utf-8") as f:
        volumes = yaml.safe_load(f)["volumes"]
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    for volume in volumes:
        assert f"`parley_{volume}`" in readme


def test_every_recipe_runs_compose_on_the_pinned_project():
    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"```sh\n(.*?)```", f.read(), re.S)
    commands = [c for block in blocks
                for c in re.sub(r"\\\n\s*", "", block).splitlines()
                if re.search(r"\bdocker-compose\b", c)]
    assert commands
    for c in commands:
        assert "docker-compose -f deploy/docker-compose.yml" in c or \
            "docker-compose -f deploy/cluster/docker-compose.yml" in c or \
            "docker-compose -p deploy -f deploy/docker-compose.yml down" in c, c


def test_the_cluster_is_a_project_of_its_own_named_parley_cluster(tmp_path):
    checkout = tmp_path / "any-name"
    shutil.copytree(os.path.join(harness.REPO, "deploy"), checkout / "deploy")
    assert _project_name(str(checkout / "deploy" / "cluster" /
                             "docker-compose.yml")) == "parley-cluster"
