"""The CRDs of every custom kind kube/ uses, installed into a cluster.

They come from ../shared (SpinKube's in schemas/, the third-party ones in crds/, each
unchanged from the release that crds/SOURCES.txt names), as in the offline checks.
"""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared"
CRD_FILES = sorted([*(SHARED / "schemas").glob("*.yaml"), *(SHARED / "crds").glob("*.yaml")])


def install_crds(kubectl) -> None:
    """Applies every CRD (server-side: some are too large for the last-applied annotation)
    and waits until the API server serves them all."""
    args = [arg for path in CRD_FILES for arg in ("-f", str(path))]
    kubectl("apply", "--server-side", "--force-conflicts", *args)
    kubectl("wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all")
