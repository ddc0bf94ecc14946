"""The test cluster: a control plane and one node in namespaces of their own, in a temporary
directory, with every CRD kube/ uses installed. Stopped by PID, parts in reverse order."""

import subprocess
from pathlib import Path

from cluster.controlplane import ControlPlane, Kubectl, Parts, find
from cluster.crds import install_crds
from cluster.namespaces import Namespaces
from cluster.node import CONTAINERD_SOCKET, Node
from cluster.pki import Pki


def load_archive(enter: tuple[str, ...], socket: Path, archive: Path) -> None:
    """Loads an OCI archive (tests/cluster/images.py) into a node's containerd."""
    argv = [*enter, find("ctr"), "--address", str(socket), "--namespace", "k8s.io",
            "images", "import", str(archive)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ctr images import {archive} failed:\n{result.stderr}")


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
            self.control_plane = ControlPlane(self.parts, Pki(self.directory / "pki"))
            self.kubectl = self.control_plane.kubectl
            self.kubeconfig = self.control_plane.kubeconfig
            self.control_plane.start()
            install_crds(self.kubectl)
            self.node = Node(self.parts, self.control_plane, self.load)
            self.node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def load(self, archive: Path) -> None:
        load_archive(self.namespaces.enter, self.directory / CONTAINERD_SOCKET, archive)

    def stop(self) -> None:
        if self.parts:
            self.parts.stop()
        if self.node:
            self.node.stop()
        if self.namespaces:
            self.namespaces.close()


class GivenCluster:
    """A cluster started elsewhere: by tests/cluster/up (`holder` holds its namespaces, and
    images load into its containerd), or any other (images cannot be loaded into it yet)."""

    def __init__(self, kubeconfig: Path, holder: int | None):
        self.holder = holder
        enter = Namespaces.entering(holder) if holder else ()
        self.kubectl = Kubectl(kubeconfig, enter).run
        self.directory = kubeconfig.parent
        install_crds(self.kubectl)

    def load(self, archive: Path) -> None:
        if not self.holder:
            raise RuntimeError("loading images into a cluster not started by tests/cluster/up "
                               "is not supported yet (its node needs a registry mirror)")  # fmt: skip
        load_archive(Namespaces.entering(self.holder), self.directory / CONTAINERD_SOCKET, archive)
