"""What the cluster runs beside its control plane and node: DNS (CoreDNS) and a default
StorageClass, as kind has them, and spin-operator, as SpinKube's install puts it. Each add-on
is built from the module addons/go.mod pins and runs as a workload, its image served by the
cluster's registry.
"""

import base64
import re
import shutil
import subprocess
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


def module_version(module: str) -> str:
    """The version addons/go.mod pins for `module`."""
    pinned = re.search(rf"^\s+{re.escape(module)} (\S+)", (ADDONS / "go.mod").read_text(), re.M)
    assert pinned, f"addons/go.mod does not require {module}"
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
    work = cluster.directory / "spin-operator"
    shutil.copytree(go_module_directory(SPIN_OPERATOR) / "config", work / "config", dirs_exist_ok=True)
    subprocess.run(["chmod", "-R", "u+w", str(work)], check=True)
    (work / "kustomization.yaml").write_text(f"""\
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
    objects = [obj for obj in yaml.safe_load_all(cluster.kubectl("kustomize", str(work)).stdout) if obj]
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
