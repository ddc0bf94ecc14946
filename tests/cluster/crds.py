"""The CRDs of every custom kind kube/ uses, installed into a cluster.

SpinKube's come from the spin-operator release the cluster runs (its Go module, as
addons/go.mod pins it); the third-party ones from ../shared/crds, each unchanged from the
release that crds/SOURCES.txt names, as in the offline checks.
"""

from pathlib import Path

from kube.manifests import spinkube_crds

SHARED = Path(__file__).resolve().parents[3] / "shared"


def crd_files() -> list[Path]:
    return sorted([*spinkube_crds().glob("*.yaml"), *(SHARED / "crds").glob("*.yaml")])


def install_crds(kubectl) -> None:
    """Applies every CRD (server-side: some are too large for the last-applied annotation)
    and waits until the API server serves them all."""
    args = [arg for path in crd_files() for arg in ("-f", str(path))]
    kubectl("apply", "--server-side", "--force-conflicts", *args)
    kubectl("wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all")
