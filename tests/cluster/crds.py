"""The CRDs of every custom kind kube/ uses, installed into a cluster.

Each comes unchanged from the Go module of its project's release, fetched from the Go module
proxy into the module cache: SpinKube's at the release addons/go.mod pins, the third-party
ones as third-party-crds.txt says. A lone clone installs the same CRDs as any other machine.
"""

import json
import subprocess
import tempfile
from pathlib import Path

from kube.manifests import spinkube_crds

# What to install, and from which release: one line per Go module (.ci/e2e-kind reads it too).
THIRD_PARTY = Path(__file__).with_name("third-party-crds.txt")


def third_party() -> list[tuple[str, str, str, list[str]]]:
    """(module, version, directory in the module, CRD files) of each line of THIRD_PARTY."""
    lines = [line.split() for line in THIRD_PARTY.read_text().splitlines() if line and not line.startswith("#")]
    return [(module, version, directory, files) for module, version, directory, *files in lines]


def module_directory(module: str, version: str) -> Path:
    """The module's tree in the Go module cache, downloaded from the proxy when missing."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        downloaded = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                                    cwd=outside_any_module, capture_output=True, text=True)  # fmt: skip
    answer = json.loads(downloaded.stdout or "{}")
    assert downloaded.returncode == 0 and "Dir" in answer, f"{module}@{version}: {answer.get('Error', downloaded.stderr)}"
    return Path(answer["Dir"])


def crd_files() -> list[Path]:
    theirs = [module_directory(module, version) / directory / name
              for module, version, directory, names in third_party() for name in names]  # fmt: skip
    return sorted([*spinkube_crds().glob("*.yaml"), *theirs])


def install_crds(kubectl) -> None:
    """Applies every CRD (server-side: some are too large for the last-applied annotation)
    and waits until the API server serves them all."""
    args = [arg for path in crd_files() for arg in ("-f", str(path))]
    kubectl("apply", "--server-side", "--force-conflicts", *args)
    kubectl("wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all")
