"""The GitHub Actions workflows: linted, audited, pinned, and running the README's commands."""

import json
import re

import yaml

from delivery.tools import BIN, WORKFLOWS, run
from kube.manifests import REPO

ZIZMOR = ("--offline", "--persona", "pedantic", "--config", REPO / ".github" / "zizmor.yml", "--format", "json")


def workflows() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(WORKFLOWS.glob("*.yml"))}


def test_there_are_the_ci_e2e_release_and_deploy_workflows():
    assert {"ci.yml", "e2e.yml", "release.yml", "deploy.yml"} <= workflows().keys()


def test_actionlint_passes():
    result = run("actionlint", "-shellcheck", BIN / "shellcheck")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.evnt.name }}\n")
    assert run("actionlint", broken).returncode != 0


def test_zizmor_finds_nothing_left_unexplained():
    result = run("zizmor", *ZIZMOR, WORKFLOWS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_zizmor_rejects_an_unpinned_action(tmp_path):
    risky = tmp_path / "risky.yml"
    risky.write_text(
        "on: pull_request_target\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - uses: actions/checkout@v5\n      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    result = run("zizmor", *ZIZMOR, risky)
    assert {finding["ident"] for finding in json.loads(result.stdout)} >= {"unpinned-uses", "template-injection"}


def uses(workflow: dict):
    for job in workflow["jobs"].values():
        if "uses" in job:
            yield job["uses"]
        for step in job.get("steps", []):
            if "uses" in step:
                yield step["uses"]


def test_every_action_is_pinned_to_a_commit_and_names_its_tag():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            match = re.search(r"uses: (\S+)(.*)", line)
            if match and not match[1].startswith(("./", "$/")):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match[1]), (path.name, line)
                assert re.fullmatch(r" # v\d+(\.\d+)*", match[2]), (path.name, line)


def test_every_called_workflow_is_one_of_ours_that_can_be_called():
    """A job's `uses:` names a workflow of this repository (GitHub's self-repository `$/`
    form, or the older `./`) that exists and whose `on:` accepts workflow_call."""
    calls = [(name, job["uses"]) for name, workflow in workflows().items()
             for job in workflow["jobs"].values() if "uses" in job]  # fmt: skip
    assert calls
    for name, called in calls:
        assert called.startswith(("$/.github/workflows/", "./.github/workflows/")), (name, called)
        target = REPO / called[2:]
        assert target.is_file(), (name, called)
        assert "workflow_call" in yaml.safe_load(target.read_text())[True], (name, called)


# Events the workflows themselves cause with GITHUB_TOKEN (release.yml publishes a release
# and packages): GitHub starts no workflow on them, so no trigger may wait for one.
EVENTS_OF_GITHUB_TOKEN = {"release", "registry_package", "create", "deployment", "deployment_status"}


def test_every_trigger_can_fire():
    for name, workflow in workflows().items():
        assert set(workflow[True]) & EVENTS_OF_GITHUB_TOKEN == set(), name  # YAML reads `on` as true


def needs(jobs: dict, job: str) -> set[str]:
    """Every job `job` waits for, directly or through others."""
    direct = jobs[job].get("needs", [])
    direct = [direct] if isinstance(direct, str) else direct
    return set(direct).union(*(needs(jobs, other) for other in direct))


def test_a_release_waits_for_green_ci_and_then_deploys():
    """Nothing is published from a commit on which ci.yml and e2e.yml have not passed, and
    a published release is deployed (deploy.yml, called with the tag)."""
    jobs = workflows()["release.yml"]["jobs"]
    gate = next(name for name, job in jobs.items() if not job.get("needs"))
    check = "\n".join(step.get("run", "") for step in jobs[gate]["steps"])
    assert "for workflow in ci.yml e2e.yml" in check and '--commit "$COMMIT"' in check and "--status success" in check
    assert jobs[gate]["steps"][0]["env"]["COMMIT"] == "${{ github.sha }}"
    assert all(gate in needs(jobs, name) for name in jobs if name != gate)
    deploy = next(job for job in jobs.values() if job.get("uses", "").endswith("/.github/workflows/deploy.yml"))
    assert deploy["with"] == {"version": "${{ github.ref_name }}"}
    assert "github-release" in needs(jobs, next(n for n, j in jobs.items() if j is deploy))


def test_every_workflow_starts_from_read_only_permissions():
    for name, workflow in workflows().items():
        assert workflow["permissions"] == {"contents": "read"}, name


def readme_commands() -> list[str]:
    """The commands of the README's quick start block."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```sh\n(.*?)```", readme, re.S)[1]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


TEST_COMMAND = re.compile(r"\b(make (test|python-tests|lint|e2e)|pytest|cargo (test|nextest|clippy|fmt)|\.ci/run)\b")


def test_the_workflows_run_the_readme_test_command_and_no_other():
    """ci.yml runs the README's test command; e2e.yml runs the cluster tests against kind
    with the command kube/README.md gives for any cluster; no workflow runs tests otherwise."""
    commands = {
        name: [line.strip() for step in job.get("steps", []) for line in step.get("run", "").splitlines()
               if TEST_COMMAND.search(line)]
        for name, workflow in workflows().items()
        for job in workflow["jobs"].values()
    }  # fmt: skip
    (readme_test,) = [c for c in readme_commands() if TEST_COMMAND.search(c)]
    assert readme_test == "make test"
    assert "\nmake e2e\n" in (REPO / "kube" / "README.md").read_text()
    assert {name: found for name, found in commands.items() if found} == {"ci.yml": [readme_test], "e2e.yml": ["make e2e"]}
    ci_steps = workflows()["ci.yml"]["jobs"]["test"]["steps"]
    assert [step["run"] for step in ci_steps if "run" in step] == [readme_test]
