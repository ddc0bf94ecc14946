"""The test cluster: a control plane, an image registry and one node in namespaces of their
own, in a temporary directory, with DNS, a default StorageClass and every CRD kube/ uses
installed. Stopped by PID, parts in reverse order."""

from pathlib import Path

from cluster.addons import install_dns, install_storage
from cluster.controlplane import ControlPlane, Kubectl, Parts
from cluster.crds import install_crds
from cluster.namespaces import Namespaces
from cluster.node import Node, node_ctr, run_ctr
from cluster.pki import Pki
from cluster.registry import Registry, push


class Cluster:
    def __init__(self, directory: Path):
        self.directory = directory
        self.namespaces = None
        self.node = None
        self.parts = None

    def start(self) -> "Cluster":
        try:
            self.namespaces = Namespaces()
            self.parts = Parts(self.directory, self.namespaces)
            self.pki = Pki(self.directory / "pki")
            self.control_plane = ControlPlane(self.parts, self.pki)
            self.client = self.control_plane.client
            self.kubectl = self.control_plane.kubectl
            self.kubeconfig = self.control_plane.kubeconfig
            self.control_plane.start()
            install_crds(self.kubectl)
            self.registry = Registry(self.parts, self.pki)
            self.registry.start()
            self.node = Node(self.parts, self.control_plane, self.load, self.registry.hosts_directory())
            self.node.start()
            install_storage(self)
            install_dns(self)
        except BaseException:
            self.stop()
            raise
        return self

    def load(self, archive: Path) -> None:
        """Loads an OCI archive (tests/cluster/images.py) into the node's containerd."""
        ctr = node_ctr(self.namespaces.enter, self.directory)
        run_ctr([*ctr, "--namespace", "k8s.io", "images", "import", str(archive)])

    def publish(self, archive: Path, name: str) -> str:
        """Pushes image `name` of an OCI archive to the cluster's registry, where the node
        pulls it as `name`; returns its reference there (for pods that pull it themselves)."""
        return push(node_ctr(self.namespaces.enter, self.directory), self.pki.ca, archive, name)

    def ctr(self, *args: str) -> str:
        """What ctr prints, run against the node's containerd."""
        return run_ctr([*node_ctr(self.namespaces.enter, self.directory), *args])

    def stop(self) -> None:
        if self.parts:
            self.parts.stop()
        if self.node:
            self.node.stop()
        if self.namespaces:
            self.namespaces.close()


class GivenCluster:
    """A cluster started elsewhere: by tests/cluster/up (`holder` holds its namespaces, and
    images are published to its registry), or any other (where images cannot be published
    yet)."""

    def __init__(self, kubeconfig: Path, holder: int | None):
        self.holder = holder
        enter = Namespaces.entering(holder) if holder else ()
        self.client = Kubectl(kubeconfig, enter)
        self.kubectl = self.client.run
        self.directory = kubeconfig.parent
        self.pki = Pki(self.directory / "pki") if holder else None
        install_crds(self.kubectl)

    def publish(self, archive: Path, name: str) -> str:
        return push(self._node_ctr(), self.pki.ca, archive, name)

    def ctr(self, *args: str) -> str:
        return run_ctr([*self._node_ctr(), *args])

    def _node_ctr(self) -> list[str]:
        if not self.holder:
            raise RuntimeError("only a cluster that tests/cluster/up started can have images published "
                               "and its containerd asked (others' nodes need a registry mirror)")  # fmt: skip
        return node_ctr(Namespaces.entering(self.holder), self.directory)
