"""The cluster the cluster tests run against, once per test session.

With GREETER_KUBECONFIG set, the tests use that cluster (kind on GitHub; for one started by
hand with tests/cluster/up, GREETER_CLUSTER_PID names the process holding its namespaces,
where kubectl must run to reach it); otherwise they start their own and stop it at the end.
A part that is missing fails the tests, naming it: they never skip.
"""

import os
import tempfile
from pathlib import Path

import pytest

from cluster.cluster import Cluster, GivenCluster

KUBECONFIG_VARIABLE = "GREETER_KUBECONFIG"
HOLDER_VARIABLE = "GREETER_CLUSTER_PID"


@pytest.fixture(scope="session")
def cluster():
    """The cluster: `kubectl(*args, input=None, check=True)`, `load(archive)` for images."""
    given = os.environ.get(KUBECONFIG_VARIABLE)
    if given:
        holder = os.environ.get(HOLDER_VARIABLE)
        yield GivenCluster(Path(given), int(holder) if holder else None)
        return
    with tempfile.TemporaryDirectory(prefix="greeter-cluster-") as directory:
        started = Cluster(Path(directory)).start()
        try:
            yield started
        finally:
            started.stop()


@pytest.fixture(scope="session")
def kubectl(cluster):
    return cluster.kubectl
