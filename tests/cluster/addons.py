"""What the cluster runs beside its control plane and node: DNS (CoreDNS) and a default
StorageClass, as kind has them, spin-operator, as SpinKube's install puts it, and
metrics-server and Stakater Reloader, as their releases install them. Each add-on is built
from the module addons/ pins and runs as a workload, its image served by the cluster's
registry.
"""

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from cluster.controlplane import find
from cluster.images import write_archive
from cluster.node import NODE_NAME
from kube.manifests import SPIN_OPERATOR, go_module_directory

ADDONS = Path(__file__).with_name("addons")
STORAGE_CLASS = "greeter-test-local"
# Claims the tests make at once (the dev overlay's Redis asks for one).
VOLUMES = 4
VOLUME_SIZE = "1Gi"
READY_TIMEOUT = "120s"


def module_version(module: str, pinned_by: Path = ADDONS) -> str:
    """The version the Go module in directory `pinned_by` pins for `module`."""
    pinned = re.search(rf"^\s+{re.escape(module)} (\S+)", (pinned_by / "go.mod").read_text(), re.M)
    assert pinned, f"{pinned_by / 'go.mod'} does not require {module}"
    return pinned.group(1)


def static_image(cluster, name: str, command: str, inside: str) -> str:
    """Publishes image `name` holding one statically linked add-on at `inside`, its
    entrypoint, run as distroless's `nonroot` user (as the add-ons' own images are)."""
    archive = cluster.directory / f"{command}.tar"
    config = {"Entrypoint": [inside], "User": "65532:65532"}
    write_archive(archive, name, {inside: Path(find(command))}, config)
    cluster.publish(archive, name)
    return name


def with_image(objects: list[dict], container: str, image: str) -> list[dict]:
    """`objects` with `image` set on every container named `container`."""
    for item in objects:
        for spec in item.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if spec["name"] == container:
                spec["image"] = image
    return objects


def render_from_module(cluster, module: Path, manifests: str, kustomization: str) -> list[dict]:
    """The objects `kustomization` renders from directory `manifests` of a Go module's tree
    (copied into the cluster's directory: the module cache is read-only)."""
    work = cluster.directory / module.name
    shutil.copytree(module / manifests, work / manifests, dirs_exist_ok=True)
    subprocess.run(["chmod", "-R", "u+w", str(work)], check=True)
    (work / "kustomization.yaml").write_text(kustomization)
    return [obj for obj in yaml.safe_load_all(cluster.kubectl("kustomize", str(work)).stdout) if obj]


def install_dns(cluster) -> None:
    name = f"registry.k8s.io/coredns/coredns:{module_version('github.com/coredns/coredns')}"
    image = static_image(cluster, name, "coredns", "/coredns")
    objects = with_image(list(yaml.safe_load_all((ADDONS / "coredns.yaml").read_text())), "coredns", image)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    cluster.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={READY_TIMEOUT}")


def install_storage(cluster) -> None:
    """The default StorageClass: local volumes in the cluster's directory, made up front
    (no provisioner), each bound where its claim's pod is scheduled."""
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }  # fmt: skip
    volumes = []
    for number in range(VOLUMES):
        path = cluster.directory / "volumes" / f"volume-{number}"
        path.mkdir(parents=True)
        volumes.append({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{STORAGE_CLASS}-{number}"},
            "spec": {
                "capacity": {"storage": VOLUME_SIZE},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "persistentVolumeReclaimPolicy": "Retain",
                "local": {"path": str(path)},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]},
                ]}]}},
            },
        })  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([storage_class, *volumes]))


SPIN_OPERATOR_NAMESPACE = "spin-operator"
# The Secret the operator's Deployment mounts its webhooks' serving certificate from.
WEBHOOK_SECRET = "webhook-server-cert"
WEBHOOK_SERVICE = f"spin-operator-webhook-service.{SPIN_OPERATOR_NAMESPACE}.svc"


def install_spin_operator(cluster) -> None:
    """spin-operator as its release's install manifest puts it (config/default of its
    module), with its webhooks, but with the serving certificate the test CA signs where
    cert-manager would make one. Its CRDs are installed with the others (crds.py)."""
    version = module_version(SPIN_OPERATOR)
    objects = render_from_module(cluster, go_module_directory(SPIN_OPERATOR), "config", f"""\
namespace: {SPIN_OPERATOR_NAMESPACE}
namePrefix: spin-operator-
resources: [config/rbac, config/manager, config/webhook, config/default/metrics_service.yaml]
patches:
  - path: config/default/manager_metrics_patch.yaml
    target: {{kind: Deployment}}
  - path: config/default/manager_webhook_patch.yaml
images:
  - name: ghcr.io/spinframework/spin-operator
    newTag: {version}
""")
    cert, key = cluster.pki.issue("spin-operator-webhook", f"/CN={WEBHOOK_SERVICE}", "serverAuth",
                                  (WEBHOOK_SERVICE, f"{WEBHOOK_SERVICE}.cluster.local"))  # fmt: skip
    ca_bundle = base64.b64encode(cluster.pki.ca.read_bytes()).decode()
    for configuration in objects:
        if configuration["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for webhook in configuration["webhooks"]:
                webhook["clientConfig"]["caBundle"] = ca_bundle
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": SPIN_OPERATOR_NAMESPACE},
        "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text()},
    }
    image = static_image(cluster, f"ghcr.io/spinframework/spin-operator:{version}", "spin-operator", "/manager")
    objects = with_image(objects, "manager", image)
    namespaces = [obj for obj in objects if obj["kind"] == "Namespace"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(namespaces))
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([secret, *objects]))
    cluster.kubectl("-n", SPIN_OPERATOR_NAMESPACE, "rollout", "status",
                    "deployment/spin-operator-controller-manager", f"--timeout={READY_TIMEOUT}")  # fmt: skip


METRICS_SERVER = "sigs.k8s.io/metrics-server"
METRICS_SERVER_MODULE = ADDONS / "metrics-server"
METRICS_SERVER_SERVICE = "metrics-server.kube-system.svc"
# Where the metrics-server pod finds its serving certificate and the CA of the kubelets'.
METRICS_SERVER_TLS = "/etc/metrics-server-tls"
METRICS_TIMEOUT_S = 120.0


def install_metrics_server(cluster) -> None:
    """metrics-server as its release's manifest (manifests/overlays/release of its module)
    installs it, with its serving certificate signed by the test CA (in the APIService's
    caBundle, where the release skips verification) and the kubelets' serving certificates
    verified against that CA (where kind's guides pass --kubelet-insecure-tls). Returns at
    once: the HPA's test waits for the metrics (wait_for_node_metrics)."""
    version = module_version(METRICS_SERVER, METRICS_SERVER_MODULE)
    module = go_module_directory(METRICS_SERVER, METRICS_SERVER_MODULE)
    objects = render_from_module(cluster, module, "manifests", "resources: [manifests/overlays/release]\n")
    cert, key = cluster.pki.issue("metrics-server", f"/CN={METRICS_SERVER_SERVICE}", "serverAuth",
                                  (METRICS_SERVER_SERVICE,))  # fmt: skip
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "metrics-server-tls", "namespace": "kube-system"},
        "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text(), "ca.crt": cluster.pki.ca.read_text()},
    }  # fmt: skip
    for item in objects:
        if item["kind"] == "APIService":
            del item["spec"]["insecureSkipTLSVerify"]
            item["spec"]["caBundle"] = base64.b64encode(cluster.pki.ca.read_bytes()).decode()
        if item["kind"] == "Deployment":
            pod = item["spec"]["template"]["spec"]
            pod["volumes"].append({"name": "tls", "secret": {"secretName": "metrics-server-tls"}})
            container = pod["containers"][0]
            container["volumeMounts"].append({"name": "tls", "mountPath": METRICS_SERVER_TLS, "readOnly": True})
            container["args"] += [f"--tls-cert-file={METRICS_SERVER_TLS}/tls.crt",
                                  f"--tls-private-key-file={METRICS_SERVER_TLS}/tls.key",
                                  f"--kubelet-certificate-authority={METRICS_SERVER_TLS}/ca.crt"]  # fmt: skip
    image = static_image(cluster, f"registry.k8s.io/metrics-server/metrics-server:{version}",
                         "metrics-server", "/metrics-server")  # fmt: skip
    objects = with_image(objects, "metrics-server", image)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([secret, *objects]))


def wait_for_node_metrics(cluster) -> None:
    """Waits until the metrics API (through the aggregation layer) has scraped the nodes."""
    deadline = time.monotonic() + METRICS_TIMEOUT_S
    while True:
        result = cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False)
        if result.returncode == 0 and json.loads(result.stdout)["items"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the metrics API serves no node metrics after {METRICS_TIMEOUT_S:.0f} s: "
                                 f"{result.stdout}{result.stderr}")  # fmt: skip
        time.sleep(2)


RELOADER = "github.com/stakater/Reloader"
RELOADER_MODULE = ADDONS / "reloader"
RELOADER_NAMESPACE = "reloader"


def install_reloader(cluster) -> None:
    """Stakater Reloader as its release's kustomization (deployments/kubernetes of its module)
    installs it, in namespace `reloader` as kube/README.md puts it. Returns at once: the
    `reloader` fixture waits for it."""
    version = module_version(RELOADER, RELOADER_MODULE)
    module = go_module_directory(RELOADER, RELOADER_MODULE)
    objects = render_from_module(cluster, module, "deployments/kubernetes",
                                 f"namespace: {RELOADER_NAMESPACE}\nresources: [deployments/kubernetes]\n")  # fmt: skip
    image = static_image(cluster, f"ghcr.io/stakater/reloader:{version}", "reloader", "/manager")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELOADER_NAMESPACE}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([namespace, *with_image(objects, "reloader-reloader", image)]))
