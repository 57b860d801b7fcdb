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
import subprocess

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


def test_image_tags_are_the_release_in_version(tmp_path):
    with open(os.path.join(harness.REPO, "VERSION"), encoding="utf-8") as f:
        version = f.read().strip()
    for env in (os.path.join("deploy", ".env"),
                os.path.join("deploy", "cluster", ".env")):
        with open(os.path.join(harness.REPO, env), encoding="utf-8") as f:
            assert f"PARLEY_IMAGE_TAG={version}\n" in f.read(), env


def test_the_start_recipe_makes_a_private_env_file_and_keeps_its_comments(
        tmp_path):
    """The README's first lines, run as written in a copy of deploy/."""
    shutil.copytree(os.path.join(harness.REPO, "deploy"), tmp_path / "deploy")
    with open(README, encoding="utf-8") as f:
        recipe = re.search(r"```sh\n(.*?)```", f.read(), re.S).group(1)
    setup = "\n".join(l for l in re.sub(r"\\\n\s*", "", recipe).splitlines()
                      if "docker-compose" not in l)
    subprocess.run(["bash", "-e", "-c", setup], cwd=tmp_path, check=True)
    env_file = tmp_path / "deploy" / "parley.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    text = env_file.read_text()
    example = (tmp_path / "deploy" / "parley.env.example").read_text()
    comments = [l for l in example.splitlines() if l.startswith("#")]
    assert comments == [l for l in text.splitlines() if l.startswith("#")]
    secret = re.search(r"^PARLEY_TOKEN_SECRET=([0-9a-f]{64})$", text, re.M)
    key = re.search(r"^PARLEY_ADMIN_KEY=([0-9a-f]{48})$", text, re.M)
    assert secret and key, text
    assert (tmp_path / "deploy" / "gateway.env").exists()
    # git ignores both.
    ignored = subprocess.run(
        ["git", "check-ignore", "deploy/parley.env", "deploy/gateway.env"],
        cwd=harness.REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["deploy/parley.env",
                                      "deploy/gateway.env"]


def test_the_cluster_is_a_project_of_its_own_named_parley_cluster(tmp_path):
    checkout = tmp_path / "any-name"
    shutil.copytree(os.path.join(harness.REPO, "deploy"), checkout / "deploy")
    assert _project_name(str(checkout / "deploy" / "cluster" /
                             "docker-compose.yml")) == "parley-cluster"
