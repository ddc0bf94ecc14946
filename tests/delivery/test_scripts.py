"""Every shell script of the repository passes shellcheck (the workflows' scripts are
checked by actionlint, in test_workflows.py)."""

import subprocess

from delivery.tools import run
from kube.manifests import REPO


def shell_scripts() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    scripts = []
    for name in tracked.stdout.split():
        with (REPO / name).open("rb") as file:
            if file.readline().rstrip() in (b"#!/usr/bin/env bash", b"#!/bin/bash", b"#!/bin/sh"):
                scripts.append(name)
    return scripts


def test_every_shell_script_passes_shellcheck():
    scripts = shell_scripts()
    assert "kube/deploy" in scripts and ".ci/setup" in scripts
    result = run("shellcheck", *scripts)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_shellcheck_rejects_a_broken_script(tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert run("shellcheck", broken).returncode != 0
