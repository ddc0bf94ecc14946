"""kube/pin-digests against a real registry (Debian's docker-registry on 127.0.0.1): every image
a render runs by tag alone ends up pinned to the digest the registry serves for that tag, the
tag kept beside it, and images that carry a digest already are left alone."""

import hashlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from delivery.tools import WORKFLOWS
from kube.manifests import APP_IMAGE, HOST_IMAGE, KUBE, KUSTOMIZATIONS, image_references, release_tag, render_path

PIN = KUBE / "pin-digests"


@pytest.fixture
def registry(tmp_path):
    """The address of a plain-HTTP registry on a free loopback port, stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    config = tmp_path / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
        "http": {"addr": address},
    }))  # fmt: skip
    server = subprocess.Popen(["docker-registry", "serve", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not answers(address):
            assert server.poll() is None and time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait()


def answers(address: str) -> bool:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def push_image(layout: Path, reference: str, content: str) -> str:
    """Pushes a one-layer image whose layer holds `content`; returns the digest it is served by."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    layer = blob(content.encode(), "application/vnd.oci.image.layer.v1.tar")
    config = blob(json.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode(),
                  "application/vnd.oci.image.config.v1+json")  # fmt: skip
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}).encode(),
                    "application/vnd.oci.image.manifest.v1+json")  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}", f"docker://{reference}"],
                   check=True, capture_output=True)  # fmt: skip
    return served_digest(reference)


def served_digest(reference: str) -> str:
    """The digest the registry itself names for `reference` (its Docker-Content-Digest):
    skopeo compresses the layer on the way, so the manifest is not the one written here."""
    address, path = reference.split("/", 1)
    name, tag = path.rsplit(":", 1)
    request = urllib.request.Request(f"http://{address}/v2/{name}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def pin(kustomization: str, names: dict[str, str], work: Path) -> subprocess.CompletedProcess:
    """kube/pin-digests run on KUSTOMIZATIONS[kustomization] with our images renamed as
    `names` says (into the test registry)."""
    served = work / "served"
    served.mkdir()
    (served / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(KUSTOMIZATIONS[kustomization], served)],
        "images": [{"name": image, "newName": name} for image, name in names.items()],
    }))  # fmt: skip
    return subprocess.run([str(PIN), str(served), str(work / "pinned")], capture_output=True, text=True,
                          env={**os.environ, "SKOPEO_OPTIONS": "--tls-verify=false"})  # fmt: skip


def test_every_image_run_by_tag_is_pinned_to_the_digest_its_registry_serves(registry, tmp_path):
    # The alternatives render runs both of our images: a SpinApp, a Deployment and an executor.
    tag = release_tag()
    local = {image: f"{registry}/{image.split('/', 1)[1]}" for image in (APP_IMAGE, HOST_IMAGE)}
    digests = {image: push_image(tmp_path / image.rsplit("/", 1)[1], f"{name}:{tag}", image)
               for image, name in local.items()}  # fmt: skip
    pinned = pin("alternatives", local, tmp_path)
    assert pinned.returncode == 0, pinned.stderr
    references = image_references(render_path(Path(pinned.stdout.strip())))
    ours = {ref for _, ref in references if ref.startswith(registry)}
    assert ours == {f"{local[image]}:{tag}@{digest}" for image, digest in digests.items()}
    assert sum(ref.startswith(registry) for _, ref in references) == 3
    # Third-party images keep the digest kube/ gives them.
    assert all("@sha256:" in ref for _, ref in references)


def test_an_image_the_registry_lacks_stops_the_pinning(registry, tmp_path):
    pinned = pin("dev", {APP_IMAGE: f"{registry}/greeter-dev/greeter"}, tmp_path)
    assert pinned.returncode != 0


def test_deploys_and_rollbacks_apply_pinned_overlays():
    steps = yaml.safe_load((WORKFLOWS / "deploy-overlay.yml").read_text())["jobs"]["deploy"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    deploys = re.findall(r"kube/deploy (\S+)", scripts)
    assert deploys == ['"$PINNED"', '"$(kube/pin-digests']
    assert 'PINNED=$(kube/pin-digests "$OVERLAY"' in scripts
    assert '@sha256:[0-9a-f]\\{64\\}"' in scripts
