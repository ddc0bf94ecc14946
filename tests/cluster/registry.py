"""The cluster's image registry: Debian's docker-registry (the CNCF Distribution server) on the
node's address over TLS, and the mirror containerd pulls every registry's images from, so
manifests keep their real names (`ghcr.io/...`, `docker.io/...`) and no pull leaves the
machine. Pods reach it at the same address, trusting the test CA.
"""

import subprocess
from pathlib import Path

from cluster.controlplane import Parts, find
from cluster.namespaces import NODE_IP
from cluster.node import run_ctr
from cluster.pki import Pki

REGISTRY_PORT = 5000
REGISTRY = f"{NODE_IP}:{REGISTRY_PORT}"
# Every registry the manifests under test name; each is served by the one above, never
# reached itself.
MIRRORED = ("docker.io", "ghcr.io", "registry.k8s.io")
# containerd's namespace where archives wait to be pushed; the kubelet's is `k8s.io`.
STAGING_NAMESPACE = "greeter-test-staging"


def repository(name: str) -> str:
    """An image name's path within its registry, as a mirror serves it:
    `redis:7` is `library/redis:7` of docker.io."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return name if rest else f"library/{name}"


class Registry:
    def __init__(self, parts: Parts, pki: Pki):
        self.parts = parts
        self.ca = pki.ca
        self.directory = parts.directory / "registry"
        self.directory.mkdir()
        self.cert, self.key = pki.issue("registry", "/CN=greeter-test-registry", "serverAuth", (NODE_IP,))

    def start(self) -> None:
        config = self.directory / "config.yml"
        config.write_text(f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.directory / "storage"}
http:
  addr: {REGISTRY}
  tls:
    certificate: {self.cert}
    key: {self.key}
""")
        self.parts.spawn("registry", [find("docker-registry"), "serve", str(config)])
        self.parts.wait_until("the registry", self._serves)

    def _serves(self) -> bool:
        probe = [*self.parts.namespaces.enter, find("curl"), "-fsS", "--cacert", str(self.ca), f"https://{REGISTRY}/v2/"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def hosts_directory(self) -> Path:
        """containerd's `config_path`: each mirrored registry resolves to ours, and only ours
        (no fallback to the real one)."""
        hosts = self.directory / "hosts"
        # containerd 1.6 refuses a hosts.toml without a `host` table.
        ours = f'server = "https://{REGISTRY}"\n[host."https://{REGISTRY}"]\n  ca = "{self.ca}"\n'
        for name in MIRRORED:
            (hosts / name).mkdir(parents=True)
            (hosts / name / "hosts.toml").write_text(ours)
        return hosts


def push(ctr: list[str], ca: Path, archive: Path, name: str) -> str:
    """Pushes image `name` of an OCI archive to the registry (trusting `ca`) through a
    node's containerd (`ctr`: the command and its address); returns the registry's
    reference to it."""
    staged = [*ctr, "--namespace", STAGING_NAMESPACE, "images"]
    remote = f"{REGISTRY}/{repository(name)}"
    run_ctr([*staged, "import", str(archive)])
    run_ctr([*staged, "push", "--tlscacert", str(ca), remote, name])
    run_ctr([*staged, "rm", name])
    return remote
