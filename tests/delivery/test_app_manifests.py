"""The app's two manifests: component/p3/spin.toml (the wasi:http@0.3 build) is spin.toml but
for its component's source and build, so the two builds run with the same variables, routes,
stores and outbound hosts."""

import os
import tomllib

from kube.manifests import REPO

MANIFESTS = {REPO / "spin.toml": "greeter.wasm", REPO / "component" / "p3" / "spin.toml": "greeter_p3.wasm"}


def without_build(manifest: dict) -> dict:
    component = manifest["component"]["greeter"]
    del component["source"], component["build"]
    return manifest


def test_the_manifests_differ_only_in_what_they_build():
    default, p3 = (tomllib.loads(path.read_text()) for path in MANIFESTS)
    assert default["component"]["greeter"]["build"] != p3["component"]["greeter"]["build"]
    assert without_build(default) == without_build(p3)


def test_each_manifest_runs_its_own_build():
    for path, wasm in MANIFESTS.items():
        component = tomllib.loads(path.read_text())["component"]["greeter"]
        source = os.path.normpath(path.parent / component["source"])
        assert source == str(REPO / "target" / "wasm32-wasip2" / "release" / wasm)
        package = "greeter-p3" if wasm == "greeter_p3.wasm" else "greeter"
        assert component["build"]["command"].endswith(f"--release -p {package}")
