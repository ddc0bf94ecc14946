"""A Kubernetes control plane for the tests: Debian's etcd and a kube-apiserver built from the
pinned Kubernetes release (tests/kubernetes), on loopback, in a temporary directory.

Every process runs in its own session and is stopped by PID when the cluster stops, even
when a test failed; nothing outlives the run (no files outside its directory, no ports
left bound), so a second run on the same machine starts the same way.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cluster.pki import Pki

CACHE = Path(os.environ.get("GREETER_CACHE", Path.home() / ".cache" / "greeter"))
LOOPBACK = "127.0.0.1"
# Addresses Services are given; no traffic goes there, the API server only allocates them.
SERVICE_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# What each part needs, and what installs it (.ci/setup runs both).
PARTS = {
    "etcd": "Debian's etcd-server package",
    "kube-apiserver": "tests/kubernetes/install kube-apiserver",
    "kubectl": "tests/kubernetes/install kubectl, or the machine's own",
}


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names what is missing or what failed."""


def find(command: str) -> str:
    """The path of one of PARTS: on PATH, else in the cache where .ci/setup builds it."""
    found = shutil.which(command) or shutil.which(command, path=str(CACHE / "bin"))
    if not found:
        raise ClusterError(f"{command} is missing: install it with {PARTS[command]}")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class Process:
    """One part of the cluster, started in its own session, its output in `<name>.log`."""

    def __init__(self, name: str, argv: list[str], directory: Path):
        self.name = name
        self.log_path = directory / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
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


class Kubectl:
    """kubectl against one cluster, named by its kubeconfig."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl's outcome; with `check`, a failure raises with what kubectl said."""
        result = subprocess.run([find("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                                input=input, capture_output=True, text=True, check=False)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result


class ControlPlane:
    """etcd and kube-apiserver, with an admin kubeconfig at `kubeconfig`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[Process] = []
        self.pki = Pki(directory / "pki")
        self.kubeconfig = directory / "admin.kubeconfig"
        self.kubectl = Kubectl(self.kubeconfig).run

    def start(self) -> "ControlPlane":
        try:
            self._start_etcd()
            self._start_apiserver()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.directory)
        self.processes.append(process)
        return process

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client}"
        self._spawn("etcd", [
            find("etcd"), "--name", "test", "--data-dir", str(self.directory / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-cluster", f"test=http://{LOOPBACK}:{peer}",
        ])  # fmt: skip

    def _start_apiserver(self) -> None:
        pki = self.pki
        self.port = free_port()
        hosts = (LOOPBACK, KUBERNETES_SERVICE_IP, "localhost", "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")  # fmt: skip
        serving_cert, serving_key = pki.issue("apiserver", "/CN=kube-apiserver", "serverAuth", hosts)
        tokens_public, tokens_private = pki.signing_key("service-accounts")
        admin_cert, admin_key = pki.issue("admin", "/O=system:masters/CN=greeter-test-admin", "clientAuth")
        self._spawn("kube-apiserver", [
            find("kube-apiserver"),
            "--etcd-servers", self.etcd_url,
            "--bind-address", LOOPBACK, "--advertise-address", LOOPBACK,
            "--secure-port", str(self.port),
            "--tls-cert-file", str(serving_cert), "--tls-private-key-file", str(serving_key),
            "--client-ca-file", str(pki.ca),
            "--authorization-mode", "Node,RBAC",
            "--service-cluster-ip-range", SERVICE_RANGE,
            # Its own Endpoints may not name a loopback address, and nothing here reaches the
            # API server through Service `kubernetes`: no reconciler, no error every 10 s.
            "--endpoint-reconciler-type", "none",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(tokens_public),
            "--service-account-signing-key-file", str(tokens_private),
        ])  # fmt: skip
        self._write_kubeconfig(admin_cert, admin_key)

    def _write_kubeconfig(self, cert: Path, key: Path) -> None:
        self.kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- name: greeter-test
  cluster:
    server: https://{LOOPBACK}:{self.port}
    certificate-authority: {self.pki.ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: greeter-test
  context: {{cluster: greeter-test, user: admin}}
current-context: greeter-test
""")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for process in self.processes:
                if why := process.exited():
                    raise ClusterError(why)
            ready = self.kubectl("get", "--raw", "/readyz", check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"kube-apiserver not ready after {START_TIMEOUT_S:.0f} s:\n"
                                   f"{ready.stdout}{ready.stderr}")  # fmt: skip
            time.sleep(0.5)
