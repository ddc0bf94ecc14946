"""The cluster's one node: Debian's containerd and runc with the CNI bridge, and kubelet and
kube-proxy from the pinned Kubernetes release.

What it takes on these machines: containerd's CRI must not lower a sandbox's OOM score
(`restrict_oom_score_adj`); the node's address is the bridge's, not loopback; the pause image
is built here (tests/cluster/pause.c), since none can be pulled. Paths the parts write to
outside their directories (pod logs, runc's state) are tmpfs mounts in the cluster's mount
namespace, so nothing is left on the machine. The node carries no zone label, as kind's does not.
"""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from cluster.controlplane import ControlPlane, Parts, find, kubeconfig
from cluster.images import write_archive
from cluster.namespaces import BRIDGE, NODE_IP, POD_NETWORK

NODE_NAME = "greeter-test-node"
# The kubelet's default sandbox image, so nothing needs to name another.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CLUSTER_DNS_IP = "10.96.0.10"
# containerd's socket, within the cluster's directory.
CONTAINERD_SOCKET = "node/containerd.sock"
CNI_PLUGINS = "/usr/lib/cni"
# Written by containerd's shims, runc and the kubelet whatever their configuration says.
PRIVATE_PATHS = ("/run/containerd", "/var/log/pods", "/var/log/containers")
CGROUP_V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd")


def node_ctr(enter: tuple[str, ...], directory: Path) -> list[str]:
    """The ctr command against the node's containerd of the cluster in `directory`."""
    return [*enter, find("ctr"), "--address", str(directory / CONTAINERD_SOCKET)]


def run_ctr(argv: list[str]) -> str:
    """What a ctr command prints; a failure raises with what it said."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr}")
    return result.stdout


def cgroup_roots(name: str) -> list[Path]:
    """The node's cgroup root `name` in each hierarchy: one under cgroup v2 (GitHub's
    runners), one per controller under v1 (these machines)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base / name]
    return [base / controller / name for controller in CGROUP_V1_CONTROLLERS]


def remove_cgroup(cgroup: Path) -> None:
    """rmdir, retried while the processes just killed leave it."""
    for _ in range(50):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    cgroup.rmdir()


class Node:
    def __init__(self, parts: Parts, control_plane: ControlPlane, load, registry_hosts: Path):
        """`load(archive)` puts an image into the node's containerd; `registry_hosts` says
        where containerd pulls each registry's images from (tests/cluster/registry.py)."""
        self.parts = parts
        self.control_plane = control_plane
        self.load = load
        self.registry_hosts = registry_hosts
        self.directory = parts.directory / "node"
        self.directory.mkdir()
        self.containerd_socket = parts.directory / CONTAINERD_SOCKET
        # Named after the cluster's directory, so two clusters on one machine keep apart.
        self.cgroup_root = f"greeter-{parts.directory.name}"

    def start(self) -> None:
        for path in PRIVATE_PATHS:
            Path(path).mkdir(parents=True, exist_ok=True)
            self.parts.namespaces.run("mount", "-t", "tmpfs", "tmpfs", path)
        for root in cgroup_roots(self.cgroup_root):
            root.mkdir(exist_ok=True)
        self._start_containerd()
        self.load(self._pause_archive())
        self._start_kubelet()
        self._start_kube_proxy()
        self.parts.wait_until("the node", self._ready)

    def stop(self) -> None:
        """After the parts: ends what outlives them by design (containerd's shims, which keep
        containers running across a containerd restart, and the containers), then removes
        the node's cgroups, deepest first."""
        ours = ["-address", str(self.containerd_socket)]
        for proc in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                argv = (proc / "cmdline").read_bytes().decode().split("\0")
                if argv[0].endswith("containerd-shim-runc-v2") and "-address" in argv:
                    at = argv.index("-address")
                    if argv[at : at + 2] == ours:
                        os.kill(int(proc.name), signal.SIGKILL)
        for root in cgroup_roots(self.cgroup_root):
            if not root.exists():
                continue
            cgroups = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for cgroup in [*cgroups, root]:
                for pid in (cgroup / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                remove_cgroup(cgroup)

    def _ready(self) -> bool:
        status = self.control_plane.kubectl(
            "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return status.stdout == "True"

    def _pause_archive(self) -> Path:
        binary = self.directory / "pause"
        source = Path(__file__).with_name("pause.c")
        subprocess.run([find("gcc"), "-static", "-Os", "-o", str(binary), str(source)], check=True)
        archive = self.directory / "pause.tar"
        write_archive(archive, PAUSE_IMAGE, {"/pause": binary}, {"Entrypoint": ["/pause"]})
        return archive

    def _start_containerd(self) -> None:
        directory = self.directory / "containerd"
        cni = self.directory / "cni"
        cni.mkdir()
        (cni / "10-greeter.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": "greeter",
            "plugins": [
                {
                    "type": "bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_NETWORK, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.directory / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }))  # fmt: skip
        config = self.directory / "containerd.toml"
        config.write_text(f"""\
version = 2
root = "{directory}/root"
state = "{directory}/state"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{directory}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # A sandbox may not lower its OOM score on these machines.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{self.registry_hosts}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
""")
        self.parts.spawn("containerd", [find("containerd"), "--config", str(config)])
        self.parts.wait_until("containerd", self.containerd_socket.exists)

    def _start_kubelet(self) -> None:
        pki = self.control_plane.pki
        client = pki.issue("kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
        serving = pki.issue("kubelet", f"/CN={NODE_NAME}", "serverAuth", (NODE_IP, NODE_NAME))
        config = self.directory / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki.ca)}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "address": NODE_IP,
            "healthzBindAddress": "127.0.0.1",
            "readOnlyPort": 0,
            "tlsCertFile": str(serving[0]),
            "tlsPrivateKeyFile": str(serving[1]),
            "clusterDNS": [CLUSTER_DNS_IP],
            "clusterDomain": "cluster.local",
            # Pods must not inherit the machine's resolvers.
            "resolvConf": "",
            "failSwapOn": False,
            "podLogsDir": "/var/log/pods",
            "serializeImagePulls": False,
            # As kind's nodes: no evictions or image collection for a disk the machine shares
            # with everything else (at 15% free, the default, pods stay Pending for
            # "disk-pressure").
            "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100,
        }))  # fmt: skip
        self.parts.spawn("kubelet", [
            find("kubelet"), "--config", str(config),
            "--kubeconfig", str(kubeconfig(self.directory / "kubelet.kubeconfig", pki, *client)),
            "--root-dir", str(self.directory / "kubelet"),
            "--hostname-override", NODE_NAME, "--node-ip", NODE_IP,
        ])  # fmt: skip

    def _start_kube_proxy(self) -> None:
        pki = self.control_plane.pki
        client = pki.issue("kube-proxy", "/CN=system:kube-proxy", "clientAuth")
        config = self.directory / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig(self.directory / "kube-proxy.kubeconfig", pki, *client))},
            "mode": "iptables",
            "clusterCIDR": POD_NETWORK,
            "hostnameOverride": NODE_NAME,
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            # The namespaces' own conntrack table is left as the kernel sized it.
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }))  # fmt: skip
        self.parts.spawn("kube-proxy", [find("kube-proxy"), "--config", str(config)])
