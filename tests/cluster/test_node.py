"""The node runs pods as any cluster's does: a pod starts, logs, takes `kubectl exec`, and
another pod reaches it through its Service (kube-proxy's rules)."""

import shutil
from pathlib import Path

import pytest
import yaml

from cluster.images import write_archive

BUSYBOX_IMAGE = "registry.k8s.io/greeter-test/busybox:1"
NAMESPACE = "node-test"


@pytest.fixture(scope="module")
def busybox(cluster, tmp_path_factory):
    """An image of Debian's static busybox, in the cluster's registry."""
    binary = shutil.which("busybox")
    assert binary, "busybox is missing: install Debian's busybox-static package"
    archive = tmp_path_factory.mktemp("images") / "busybox.tar"
    write_archive(archive, BUSYBOX_IMAGE, {"/bin/busybox": Path(binary)}, {"Entrypoint": ["/bin/busybox"]})
    cluster.publish(archive, BUSYBOX_IMAGE)
    cluster.kubectl("create", "namespace", NAMESPACE)
    yield BUSYBOX_IMAGE
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def pod(name, args, labels=None):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "args": args}],
            "terminationGracePeriodSeconds": 1,
        },
    }


def apply(kubectl, *objects):
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def test_a_pod_runs_logs_and_takes_exec(kubectl, busybox):
    apply(kubectl, pod("echo", ["sh", "-c", "echo started; exec busybox sleep 3600"]))
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/echo", "--timeout=60s")
    assert "started" in kubectl("-n", NAMESPACE, "logs", "echo").stdout
    assert kubectl("-n", NAMESPACE, "exec", "echo", "--", "busybox", "echo", "inside").stdout == "inside\n"


def test_a_pod_reaches_another_through_its_service(kubectl, busybox):
    serve = "busybox mkdir /www && echo served > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    server = pod("web", ["sh", "-c", serve], {"app": "web"})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(kubectl, server, service, pod("client", ["sleep", "3600"]))
    for name in ("web", "client"):
        kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
    address = kubectl("-n", NAMESPACE, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    # nc, not wget: a static glibc busybox crashes resolving even an address.
    get = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {address} 80"
    fetched = kubectl("-n", NAMESPACE, "exec", "client", "--", "busybox", "sh", "-c", get).stdout
    assert fetched.startswith("HTTP/1.1 200 OK") and fetched.splitlines()[-1] == "served", fetched
