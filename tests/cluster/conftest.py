"""The cluster the cluster tests run against, once per test session.

With GREETER_KUBECONFIG set, the tests use that cluster: for one started by hand with
tests/cluster/up, GREETER_CLUSTER_PID names the process holding its namespaces, where kubectl
must run to reach it; any other (kind on GitHub, .github/workflows/e2e.yml) is described by
the variables of cluster.py (its registry, that registry's CA, how to reach its node), and
has spin-operator, metrics-server, Reloader and every CRD kube/ uses installed. Otherwise the
tests start their own cluster and stop it at the end. A part that is missing fails the tests,
naming it: they never skip.
"""

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kube.manifests import DEPLOY, KUSTOMIZATIONS, REPO, gateway_values, of_kind, one, pod_specs, render_path
from cluster.addons import RELOADER_NAMESPACE, SPIN_OPERATOR_NAMESPACE, install_spin_operator, wait_for_node_metrics
from cluster.cluster import Cluster, GivenCluster
from cluster.registry import served_from
from cluster.workload_images import CLIENT_IMAGE, HOST_BINARY, publish

KUBECONFIG_VARIABLE = "GREETER_KUBECONFIG"
HOLDER_VARIABLE = "GREETER_CLUSTER_PID"
# Run first: on the tests' own cluster they check every render before any webhook exists
# (the spin_operator fixture installs spin-operator's).
BEFORE_WEBHOOKS = "test_server_dry_run.py"
# Run last: it turns dev's SpinApp into an autoscaled one.
AUTOSCALED_LAST = "test_autoscaling.py"
DEV_OVERLAY = Path(__file__).with_name("dev")
# Where dev's gateway proxies run: the one namespace its NetworkPolicies let HTTP in from.
CLIENT_NAMESPACE = gateway_values(KUSTOMIZATIONS["dev"])["proxiesNamespace"]
NAMESPACE = "greeter"
# The Secret tests/cluster/dev gives the greeter-host executor as its CA bundle.
TEST_CA_SECRET = "greeter-test-ca"


def push_app(cluster, reference: str, home: Path) -> None:
    """`greeter-host registry push` of this checkout's app, from where the cluster's registry
    is reachable, trusting that registry's CA."""
    env = {"HOME": str(home), "SSL_CERT_FILE": str(cluster.registry_ca)}
    cluster.client.script(str(HOST_BINARY), "registry", "push", "-f", str(REPO / "spin.toml"), reference, env=env)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: (item.path.name != BEFORE_WEBHOOKS, item.path.name == AUTOSCALED_LAST))


@pytest.fixture(scope="session")
def cluster():
    """The cluster: `kubectl(*args, input=None, check=True)`, `load(archive)` for images."""
    given = os.environ.get(KUBECONFIG_VARIABLE)
    if given:
        holder = os.environ.get(HOLDER_VARIABLE)
        yield GivenCluster(Path(given), int(holder) if holder else None, os.environ)
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


@pytest.fixture(scope="session")
def spin_operator(cluster):
    """spin-operator with its webhooks: installed into a cluster the tests start (or one
    tests/cluster/up started); any other cluster must have it already, as e2e.yml installs
    SpinKube on kind."""
    if isinstance(cluster, Cluster) or cluster.holder:
        install_spin_operator(cluster)
    else:
        cluster.kubectl("-n", SPIN_OPERATOR_NAMESPACE, "get", "deployment")


@pytest.fixture(scope="session")
def metrics_server(cluster):
    """The metrics API the HPA reads, serving the node's figures: metrics-server comes with
    the clusters of tests/cluster; any other must have it, as .ci/e2e-kind installs it."""
    wait_for_node_metrics(cluster)


@pytest.fixture(scope="session")
def reloader(cluster):
    """Stakater Reloader, which rolls the workloads whose Secrets change: it comes with the
    clusters of tests/cluster; any other must have it, as .ci/e2e-kind installs it."""
    cluster.kubectl("-n", RELOADER_NAMESPACE, "rollout", "status", "deployment/reloader-reloader", "--timeout=120s")


@dataclass
class Deployed:
    overlay: Path
    # Runs a command in a client pod of the namespace of dev's gateway proxies, from where
    # kube/'s NetworkPolicies let HTTP in (as the proxies would), so the tests pass where the
    # policies are enforced.
    client: Callable[..., str]


@pytest.fixture(scope="session")
def dev(cluster, spin_operator, tmp_path_factory):
    """kube/overlays/dev (through tests/cluster/dev) deployed as kube/README.md says, with
    kube/deploy, its images built and published first, and the app pushed by greeter-host to
    the cluster's registry, from where the SpinApp's executor pulls it."""
    overlay = served_from(DEV_OVERLAY, cluster.registry, tmp_path_factory.mktemp("dev"))
    objects = render_path(overlay)
    images = tmp_path_factory.mktemp("images")
    references = {container["image"] for _, spec in pod_specs(objects) for container in spec["containers"]}
    executor_images = {executor["spec"]["deploymentConfig"]["spinImage"] for executor in of_kind(objects, "SpinAppExecutor")}
    for reference in sorted(references | executor_images | {CLIENT_IMAGE}):
        publish(cluster, images, reference)
    for app in of_kind(objects, "SpinApp"):
        push_app(cluster, app["spec"]["image"], tmp_path_factory.mktemp("home"))
    # The executor's CA Secret, in the namespace as kube/deploy will apply it.
    ca = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TEST_CA_SECRET, "namespace": NAMESPACE},
          "stringData": {"ca-certificates.crt": cluster.registry_ca.read_text()}}  # fmt: skip
    cluster.client.settle([NAMESPACE, CLIENT_NAMESPACE])
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([one(objects, "Namespace", NAMESPACE), ca]))
    cluster.client.script(str(DEPLOY), str(overlay))
    client_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": CLIENT_NAMESPACE},
        "spec": {
            "containers": [{"name": "client", "image": CLIENT_IMAGE, "args": ["-c", "exec busybox sleep 3600"]}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CLIENT_NAMESPACE}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([namespace, client_pod]))
    cluster.kubectl("-n", CLIENT_NAMESPACE, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s")

    def client(*argv):
        return cluster.kubectl("-n", CLIENT_NAMESPACE, "exec", "client", "--", *argv).stdout

    yield Deployed(overlay, client)
    cluster.kubectl("delete", "namespace", "greeter", CLIENT_NAMESPACE, "--wait=false")
