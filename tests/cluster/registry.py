"""The cluster's image registry: Debian's docker-registry (the CNCF Distribution server) on the
node's address over TLS, and the mirror containerd pulls every registry's images from, so
manifests keep their real names (`ghcr.io/...`, `docker.io/...`) and no pull leaves the
machine. Pods reach it at the same address, trusting the test CA.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from cluster.controlplane import Parts, find
from cluster.namespaces import NODE_IP
from cluster.pki import Pki
from kube.manifests import of_kind, render_path

REGISTRY_PORT = 5000
REGISTRY = f"{NODE_IP}:{REGISTRY_PORT}"
# Every registry the manifests under test name; each is served by the one above, never
# reached itself.
MIRRORED = ("docker.io", "ghcr.io", "registry.k8s.io")


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


def push(enter: tuple[str, ...], registry: str, ca: Path, archive: Path, name: str) -> str:
    """Pushes the image of an OCI archive to `registry` (over TLS, trusting `ca`) as the
    mirror serves `name`, running skopeo where the registry is reachable (`enter`); returns
    the registry's reference to it."""
    remote = f"{registry}/{repository(name)}"
    with tempfile.TemporaryDirectory() as certs:
        shutil.copy(ca, Path(certs) / "ca.crt")  # skopeo trusts the *.crt of a directory
        copy = [*enter, find("skopeo"), "copy", "--quiet", "--dest-cert-dir", certs,
                f"oci-archive:{archive}", f"docker://{remote}"]  # fmt: skip
        result = subprocess.run(copy, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pushing {name} to {registry} failed:\n{result.stderr}")
    return remote


def served_from(overlay: Path, registry: str, directory: Path) -> Path:
    """`overlay`, whose SpinApps name images in our registry by its address (REGISTRY), with
    those images in `registry` instead: itself when they are the same, else an overlay of it
    written into `directory`."""
    if registry == REGISTRY:
        return overlay
    names = sorted({app["spec"]["image"].rsplit(":", 1)[0] for app in of_kind(render_path(overlay), "SpinApp")
                    if app["spec"]["image"].startswith(f"{REGISTRY}/")})  # fmt: skip
    images = [{"name": name, "newName": registry + name.removeprefix(REGISTRY)} for name in names]
    directory.mkdir(parents=True, exist_ok=True)
    kustomization = {"resources": [os.path.relpath(overlay, directory)], "images": images}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory
