"""host/Dockerfile: hadolint-clean, and building what the greeter-host Deployment runs."""

import fnmatch
import json
import os
import re
import tomllib
from pathlib import PurePosixPath

from delivery.tools import run
from kube.manifests import REPO, one, render

DOCKERFILE = REPO / "host" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def test_hadolint_passes():
    result = run("hadolint", DOCKERFILE)
    assert (result.returncode, result.stdout) == (0, "")


def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM rust:latest\nRUN cd /src && cargo build\nUSER root\n")
    assert run("hadolint", careless).returncode != 0


def test_base_images_are_pinned_by_digest():
    bases = [args.split()[0] for op, args in instructions() if op == "FROM"]
    assert len(bases) == 2 and all(re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", b) for b in bases)


def test_the_image_builds_the_host_and_both_app_builds_and_keeps_the_manifest_layout():
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert "cargo build --locked --profile host -p greeter-host" in runs
    assert "cargo build --locked --target wasm32-wasip2 --release -p greeter -p greeter-p3" in runs
    copies = {args.split()[-1] for op, args in instructions() if op == "COPY"}
    for manifest in (REPO / "spin.toml", REPO / "component" / "p3" / "spin.toml"):
        source = tomllib.loads(manifest.read_text())["component"]["greeter"]["source"]
        in_image = PurePosixPath("/app") / manifest.relative_to(REPO)
        assert {str(in_image), os.path.normpath(in_image.parent / source)} <= copies


def test_the_image_and_the_deployment_run_the_wasi_http_0_3_build():
    (cmd,) = [json.loads(args) for op, args in instructions() if op == "CMD"]
    container = one(render("dev"), "Deployment", "greeter-host")["spec"]["template"]["spec"]["containers"][0]
    for argv in (cmd, container["args"]):
        assert argv[argv.index("--from") + 1] == "/app/component/p3/spin.toml"


def test_the_image_runs_as_nonroot_on_the_deployment_ports():
    final = instructions()[max(i for i, (op, _) in enumerate(instructions()) if op == "FROM"):]
    (user,) = [args for op, args in final if op == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    (exposed,) = [set(args.split()) for op, args in final if op == "EXPOSE"]
    container = one(render("dev"), "Deployment", "greeter-host")["spec"]["template"]["spec"]["containers"][0]
    assert exposed == {str(port["containerPort"]) for port in container["ports"]}
    assert int(user.split(":")[0]) == one(render("dev"), "Deployment", "greeter-host")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(c, pattern) or (pattern.startswith("**/") and fnmatch.fnmatchcase(c, pattern[3:]))
               for c in candidates):
            verdict = not negated
    return verdict


def test_the_build_context_has_the_whole_workspace_and_nothing_built():
    patterns = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    needed = ["Cargo.toml", "Cargo.lock", "spin.toml", "wit/world.wit"]
    needed += [f"{member}/{part}" for member in members for part in ("Cargo.toml", "src")]
    assert [path for path in needed if ignored(path, patterns)] == []
    assert all(ignored(path, patterns) for path in ("target/host/greeter-host", ".git/HEAD", "kube/base/spinapp.yaml"))
