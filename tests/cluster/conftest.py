"""The cluster the cluster tests run against, once per test session.

With GREETER_KUBECONFIG set, the tests use that cluster (kind on GitHub, or one started by
hand with tests/cluster/up); otherwise they start their own control plane and stop it at
the end. A part that is missing fails the tests, naming it: they never skip.
"""

import os
import tempfile
from pathlib import Path

import pytest

from cluster.controlplane import ControlPlane, Kubectl
from cluster.crds import install_crds

KUBECONFIG_VARIABLE = "GREETER_KUBECONFIG"


@pytest.fixture(scope="session")
def kubectl():
    """`kubectl(*args, input=None, check=True)` against the cluster, its CRDs installed."""
    given = os.environ.get(KUBECONFIG_VARIABLE)
    if given:
        run = Kubectl(Path(given)).run
        install_crds(run)
        yield run
        return
    with tempfile.TemporaryDirectory(prefix="greeter-cluster-") as directory:
        control_plane = ControlPlane(Path(directory)).start()
        try:
            install_crds(control_plane.kubectl)
            yield control_plane.kubectl
        finally:
            control_plane.stop()
