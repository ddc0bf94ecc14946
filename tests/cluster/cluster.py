"""The test cluster: a control plane, an image registry and one node in namespaces of their
own, in a temporary directory, with DNS, a default StorageClass, metrics-server, Reloader and
every CRD kube/ uses installed. Stopped by PID, parts in reverse order."""

import shlex
from collections.abc import Mapping
from pathlib import Path

from cluster.addons import install_dns, install_metrics_server, install_reloader, install_storage
from cluster.controlplane import ClusterError, ControlPlane, Kubectl, Parts
from cluster.crds import install_crds
from cluster.namespaces import Namespaces
from cluster.node import Node, node_ctr, run_ctr
from cluster.pki import Pki
from cluster.registry import REGISTRY, Registry, push


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
            registry = Registry(self.parts, self.pki)
            registry.start()
            self.registry, self.registry_ca = REGISTRY, self.pki.ca
            self.node = Node(self.parts, self.control_plane, self.load, registry.hosts_directory())
            self.node.start()
            install_storage(self)
            install_dns(self)
            install_metrics_server(self)
            install_reloader(self)
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
        return push(self.namespaces.enter, self.registry, self.registry_ca, archive, name)

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


# How a cluster started elsewhere, other than by tests/cluster/up, is described (e2e.yml sets
# them for kind): a registry (host:port, TLS) that its nodes use as the mirror of every
# registry in MIRRORED and that pods reach at the same address; that registry's CA
# certificate; and the command prefix that runs a command on its node (for `ctr`).
REGISTRY_VARIABLE = "GREETER_REGISTRY"
REGISTRY_CA_VARIABLE = "GREETER_REGISTRY_CA"
NODE_EXEC_VARIABLE = "GREETER_NODE_EXEC"


class GivenCluster:
    """A cluster started elsewhere: by tests/cluster/up (`holder` holds its namespaces, where
    its addresses and its registry are), or any other, described by the variables above."""

    def __init__(self, kubeconfig: Path, holder: int | None, environ: Mapping[str, str]):
        self.holder = holder
        self.enter = Namespaces.entering(holder) if holder else ()
        self.client = Kubectl(kubeconfig, self.enter)
        self.kubectl = self.client.run
        self.directory = kubeconfig.parent
        if holder:
            self.pki = Pki(self.directory / "pki")
            self.registry, self.registry_ca = REGISTRY, self.pki.ca
            self.ctr_command = node_ctr(self.enter, self.directory)
            return

        def given(name: str) -> str:
            if not environ.get(name):
                raise ClusterError(f"{name} is not set: a given cluster needs {REGISTRY_VARIABLE}, "
                                   f"{REGISTRY_CA_VARIABLE} and {NODE_EXEC_VARIABLE} (tests/cluster/cluster.py)")  # fmt: skip
            return environ[name]

        self.registry, self.registry_ca = given(REGISTRY_VARIABLE), Path(given(REGISTRY_CA_VARIABLE))
        self.ctr_command = [*shlex.split(given(NODE_EXEC_VARIABLE)), "ctr"]

    def publish(self, archive: Path, name: str) -> str:
        return push(self.enter, self.registry, self.registry_ca, archive, name)

    def ctr(self, *args: str) -> str:
        return run_ctr([*self.ctr_command, *args])
