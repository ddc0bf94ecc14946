"""One release tag everywhere: `v` + spin.toml's version, on the images the overlays run,
the names the workflows publish and deploy, Argo CD's revision and the docs' examples."""

import re
import tomllib

import pytest
import yaml

from delivery.tools import WORKFLOWS
from kube.manifests import APP_IMAGE, APP_RENDERS, HOST_IMAGE, KUBE, REPO, image_references, one, release_tag, render

DOCS = (REPO / "README.md", KUBE / "README.md")
OURS = re.compile(r"ghcr\.io/greeter-dev/[\w.-]+(?::[\w.-]+)?")


def disagreements(tag: str) -> list[str]:
    """Every reference to our images or release that does not carry `tag`."""
    wrong = []
    for name in APP_RENDERS:
        for owner, image in image_references(render(name)):
            if image.split(":")[0] in (APP_IMAGE, HOST_IMAGE) and image != f"{image.split(':')[0]}:{tag}":
                wrong.append(f"overlay {name}: {owner} runs {image}")
    revision = one(render("argocd"), "ApplicationSet", "greeter")["spec"]["template"]["spec"]["source"]["targetRevision"]
    if revision != tag:
        wrong.append(f"kube/argocd: targetRevision {revision}")
    for doc in DOCS:
        for ref in OURS.findall(doc.read_text()):
            if ":" in ref and ref.split(":")[1] != tag:
                wrong.append(f"{doc.relative_to(REPO)}: {ref}")
    return wrong


def test_every_reference_carries_the_release_tag():
    assert release_tag() == "v" + re.search(r'(?m)^version = "(.+)"', (REPO / "spin.toml").read_text())[1]
    assert disagreements(release_tag()) == []


def test_a_deploy_passes_only_once_the_new_version_answers():
    """The smoke test asks the app which version it is (its OpenAPI document's
    info.version: the workspace's package version, which is spin.toml's)."""
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert "v" + workspace == release_tag()
    deploy = yaml.safe_load((WORKFLOWS / "deploy-overlay.yml").read_text())
    smoke = next(s["run"] for s in deploy["jobs"]["deploy"]["steps"] if s.get("name") == "Smoke test")
    assert '/openapi.json" | jq -r .info.version)' in smoke and 'test "v$served" = "$VERSION"' in smoke


def test_a_version_bump_alone_is_caught():
    bumped = "v" + ".".join(release_tag()[1:].split(".")[:-1] + [str(int(release_tag().split(".")[-1]) + 1)])
    assert len(disagreements(bumped)) >= len(APP_RENDERS) + 1


@pytest.mark.parametrize("workflow", ["release.yml", "deploy-overlay.yml"])
def test_workflows_publish_and_deploy_the_overlays_images(workflow):
    text = (WORKFLOWS / workflow).read_text()
    env = yaml.safe_load(text)["env"]
    assert env["APP_IMAGE"] == APP_IMAGE
    assert env.get("HOST_IMAGE", HOST_IMAGE) == HOST_IMAGE
    # No other spelling of our images anywhere in the workflow.
    assert set(OURS.findall(text)) <= {APP_IMAGE, HOST_IMAGE}


def test_release_tags_are_checked_against_spin_toml():
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    assert release[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as true
    steps = release["jobs"]["component"]["steps"]
    assert any("spin.toml" in s.get("run", "") and '"$TAG" = "v$version"' in s.get("run", "") for s in steps)
    pushes = [s["run"] for job in release["jobs"].values() for s in job.get("steps", []) if "registry push" in s.get("run", "")]
    assert pushes and all('"$APP_IMAGE:$TAG"' in p for p in pushes)


def test_a_release_never_moves_a_published_tag():
    """Each publishing step refuses a tag that exists before it pushes or tags."""
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    scripts = [s["run"] for job in release["jobs"].values() for s in job.get("steps", []) if "run" in s]
    publishing = [(script, publish) for script in scripts
                  for publish in ("registry push", "imagetools create --tag") if publish in script]  # fmt: skip
    assert len(publishing) == 2, publishing
    for script, publish in publishing:
        before = script[: script.index(publish)]
        check = re.search(r'if (skopeo inspect --raw "docker://|docker buildx imagetools inspect ")\$(APP|HOST)_IMAGE:\$TAG', before)
        assert check and "exists already\"; exit 1" in before, script
