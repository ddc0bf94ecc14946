"""The cluster's control plane: Debian's etcd, and kube-apiserver, kube-controller-manager and
kube-scheduler built from the pinned Kubernetes release (tests/kubernetes).

The API server listens on the node's address inside the cluster's namespaces, where pods
reach it through Service `kubernetes` as on any cluster; etcd and the other parts' ports stay
on the namespaces' loopback.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cluster.namespaces import NODE_IP, SERVICE_RANGE, Namespaces
from cluster.pki import Pki

CACHE = Path(os.environ.get("GREETER_CACHE", Path.home() / ".cache" / "greeter"))
API_PORT = 6443
ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ETCD_PEER_URL = "http://127.0.0.1:2380"
KUBERNETES_SERVICE_IP = "10.96.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# What each command needs, and what installs it (.ci/setup runs each).
PARTS = {
    "etcd": "Debian's etcd-server package",
    "kubectl": "tests/kubernetes/install kubectl, or the machine's own",
    **{
        command: f"tests/kubernetes/install {command}"
        for command in ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                        "kubelet", "kube-proxy")  # fmt: skip
    },
    "containerd": "Debian's containerd package",
    "runc": "Debian's runc package",
    "ctr": "Debian's containerd package",
    "gcc": "Debian's gcc package (the pause image is built from tests/cluster/pause.c)",
    "docker-registry": "Debian's docker-registry package",
    "skopeo": "Debian's skopeo package",
    "curl": "Debian's curl package",
    **{command: f"tests/cluster/addons/install {command}" for command in ("coredns", "spin-operator", "metrics-server")},
}


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names what is missing or what failed."""


def find(command: str) -> str:
    """The path of one of PARTS: on PATH, else in the cache where .ci/setup builds it."""
    found = shutil.which(command) or shutil.which(command, path=str(CACHE / "bin"))
    if not found:
        raise ClusterError(f"{command} is missing: install it with {PARTS[command]}")
    return found


class Kubectl:
    """kubectl against one cluster, named by its kubeconfig; `enter` runs it where the
    cluster's addresses are reachable."""

    def __init__(self, kubeconfig: Path, enter: tuple[str, ...] = ()):
        self.kubeconfig = kubeconfig
        self.enter = enter

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl's outcome; with `check`, a failure raises with what kubectl said."""
        argv = [*self.enter, find("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def settle(self, namespaces) -> None:
        """Waits until each of `namespaces` that an earlier run is still deleting is gone, so
        that it can be made again."""
        for name in namespaces:
            phase = self.run("get", "namespace", name, "-o", "jsonpath={.status.phase}", check=False).stdout
            if phase == "Terminating":
                self.run("wait", "--for=delete", f"namespace/{name}", "--timeout=180s")

    def script(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Runs a command whose kubectl (found first on its PATH) talks to this cluster,
        with `env` added to its environment; a failure raises with what it printed."""
        path = f"{Path(find('kubectl')).parent}:{os.environ['PATH']}"
        variables = [f"{name}={value}" for name, value in {"KUBECONFIG": self.kubeconfig, "PATH": path, **(env or {})}.items()]
        command = [*self.enter, "env", *variables, *argv]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
        return result


class Process:
    """One part of the cluster, run inside its namespaces, its output in `<name>.log`."""

    def __init__(self, name: str, argv: list[str], directory: Path, enter: tuple[str, ...]):
        self.name = name
        self.log_path = directory / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen([*enter, *argv], stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=directory,
                                          start_new_session=True)  # fmt: skip

    def exited(self) -> str | None:
        """Why the process is gone (its exit code and last log lines), or None if it runs."""
        if self.popen.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return f"{self.name} exited with {self.popen.returncode}:\n" + "\n".join(tail)

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


class Parts:
    """The processes of a cluster, started in order and stopped in reverse."""

    def __init__(self, directory: Path, namespaces: Namespaces):
        self.directory = directory
        self.namespaces = namespaces
        self.processes: list[Process] = []

    def spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.directory, self.namespaces.enter)
        self.processes.append(process)
        return process

    def check(self) -> None:
        """Raises with the reason when any part has exited."""
        for process in self.processes:
            if why := process.exited():
                raise ClusterError(why)

    def wait_until(self, what: str, ready, timeout: float = START_TIMEOUT_S) -> None:
        """Polls `ready()` until true, failing early when a part exits."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} not ready after {timeout:.0f} s (logs in {self.directory})")
            time.sleep(0.5)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def kubeconfig(path: Path, pki: Pki, cert: Path, key: Path) -> Path:
    path.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- name: greeter-test
  cluster:
    server: https://{NODE_IP}:{API_PORT}
    certificate-authority: {pki.ca}
users:
- name: user
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: greeter-test
  context: {{cluster: greeter-test, user: user}}
current-context: greeter-test
""")
    return path


class ControlPlane:
    """etcd, the API server, the controller manager and the scheduler; `kubectl` as admin."""

    def __init__(self, parts: Parts, pki: Pki):
        self.parts = parts
        self.pki = pki
        directory = parts.directory
        admin_cert, admin_key = pki.issue("admin", "/O=system:masters/CN=greeter-test-admin", "clientAuth")
        self.kubeconfig = kubeconfig(directory / "admin.kubeconfig", pki, admin_cert, admin_key)
        self.client = Kubectl(self.kubeconfig, parts.namespaces.enter)
        self.kubectl = self.client.run

    def start(self) -> None:
        parts, pki, directory = self.parts, self.pki, self.parts.directory
        parts.spawn("etcd", [
            find("etcd"), "--name", "test", "--data-dir", str(directory / "etcd"),
            "--listen-client-urls", ETCD_CLIENT_URL, "--advertise-client-urls", ETCD_CLIENT_URL,
            "--listen-peer-urls", ETCD_PEER_URL, "--initial-advertise-peer-urls", ETCD_PEER_URL,
            "--initial-cluster", f"test={ETCD_PEER_URL}",
        ])  # fmt: skip
        hosts = (NODE_IP, KUBERNETES_SERVICE_IP, "127.0.0.1", "localhost", "kubernetes",
                 "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")  # fmt: skip
        serving_cert, serving_key = pki.issue("apiserver", "/CN=kube-apiserver", "serverAuth", hosts)
        # The API server's calls to kubelets (logs, exec) authenticate with this certificate.
        kubelet_client = pki.issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver", "clientAuth")
        tokens_public, tokens_private = pki.signing_key("service-accounts")
        # The aggregation layer (metrics-server's API) vouches for the users it proxies with a
        # client certificate of a CA of its own, as kubeadm sets it up.
        front_proxy = Pki(pki.directory / "front-proxy", "greeter-test-front-proxy-ca")
        proxy_cert, proxy_key = front_proxy.issue("front-proxy-client", "/CN=front-proxy-client", "clientAuth")
        parts.spawn("kube-apiserver", [
            find("kube-apiserver"),
            "--etcd-servers", ETCD_CLIENT_URL,
            "--bind-address", NODE_IP, "--advertise-address", NODE_IP,
            "--secure-port", str(API_PORT),
            "--tls-cert-file", str(serving_cert), "--tls-private-key-file", str(serving_key),
            "--client-ca-file", str(pki.ca),
            "--kubelet-certificate-authority", str(pki.ca),
            "--kubelet-client-certificate", str(kubelet_client[0]),
            "--kubelet-client-key", str(kubelet_client[1]),
            "--kubelet-preferred-address-types", "InternalIP",
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(tokens_public),
            "--service-account-signing-key-file", str(tokens_private),
            "--requestheader-client-ca-file", str(front_proxy.ca),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(proxy_cert), "--proxy-client-key-file", str(proxy_key),
            # To the aggregated API's endpoints, not through its Service's virtual address.
            "--enable-aggregator-routing",
        ])  # fmt: skip
        parts.wait_until("kube-apiserver", lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0)
        controllers = [
            "--service-account-private-key-file", str(tokens_private),
            "--root-ca-file", str(pki.ca),
            "--use-service-account-credentials",
            "--cluster-signing-cert-file", str(pki.ca),
            "--cluster-signing-key-file", str(pki.ca_key),
            # The HPA acts on metrics every 5 s rather than 15 s: the autoscaling test waits less;
            # the HPA's own windows and policies are kube/'s.
            "--horizontal-pod-autoscaler-sync-period", "5s",
        ]  # fmt: skip
        for name, user, extra in (("kube-controller-manager", "system:kube-controller-manager", controllers),
                                  ("kube-scheduler", "system:kube-scheduler", [])):  # fmt: skip
            cert, key = pki.issue(name, f"/CN={user}", "clientAuth")
            config = kubeconfig(directory / f"{name}.kubeconfig", pki, cert, key)
            parts.spawn(name, [find(name), "--kubeconfig", str(config), "--authentication-kubeconfig",
                               str(config), "--authorization-kubeconfig", str(config),
                               "--bind-address", "127.0.0.1", "--leader-elect=false", *extra])  # fmt: skip
