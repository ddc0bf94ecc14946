"""The images the cluster tests run, made without Docker from this checkout's build outputs
and Debian's packages, each published under the name the manifests use:
- greeter-host, laid out as host/Dockerfile lays it out (the debug build `make test` makes),
  its binary with the permitted-only capability to bind port 80;
- Redis, as the Alpine-based image kube/ pins: redis-server as the entrypoint, redis-cli for
  the probes, a shell;
- a client for the tests to run where the NetworkPolicies let HTTP in: busybox's shell and
  curl.
"""

import shutil
from pathlib import Path

import struct

from cluster.images import Extras, with_libraries, write_archive

REPO = Path(__file__).resolve().parents[2]
CLIENT_IMAGE = "registry.k8s.io/greeter-test/client:1"
HOST_BINARY = REPO / "target" / "debug" / "greeter-host"
# The app's two builds with their manifests, where host/Dockerfile puts them.
APP_BUILDS = {
    REPO / "spin.toml": REPO / "target" / "wasm32-wasip2" / "release" / "greeter.wasm",
    REPO / "component" / "p3" / "spin.toml": REPO / "target" / "wasm32-wasip2" / "release" / "greeter_p3.wasm",
}


def installed(command: str, package: str) -> Path:
    found = shutil.which(command)
    assert found, f"{command} is missing: install Debian's {package} package"
    return Path(found)


def built(path: Path) -> Path:
    assert path.exists(), f"{path} is missing: make test builds it (cargo build, cargo test)"
    return path


# `setcap cap_net_bind_service=p`: struct vfs_cap_data, revision 2, no effective bit,
# CAP_NET_BIND_SERVICE (10) permitted (host/src/server/listener.rs says why).
NET_BIND_SERVICE_PERMITTED = struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)


def greeter_host() -> tuple[dict, dict, Extras]:
    files = with_libraries({"/usr/local/bin/greeter-host": built(HOST_BINARY)})
    for manifest, component in APP_BUILDS.items():
        files[f"/app/{manifest.relative_to(REPO)}"] = manifest
        files[f"/app/{component.relative_to(REPO)}"] = built(component)
    config = {
        "Entrypoint": ["/usr/local/bin/greeter-host"],
        "WorkingDir": "/app",
        "User": "65532:65532",
        "Env": ["XDG_CACHE_HOME=/tmp/.cache"],
    }
    extras = Extras(
        directories={"/tmp": 0o1777},
        xattrs={"/usr/local/bin/greeter-host": {"security.capability": NET_BIND_SERVICE_PERMITTED}},
    )
    return files, config, extras


def redis() -> tuple[dict, dict, Extras]:
    files = with_libraries({
        "/usr/bin/redis-server": installed("redis-server", "redis-server"),
        "/usr/bin/redis-cli": installed("redis-cli", "redis-tools"),
    })  # fmt: skip
    # A shell, as the Alpine-based image has.
    files["/bin/sh"] = installed("busybox", "busybox-static")
    return files, {"Entrypoint": ["/usr/bin/redis-server"], "Env": ["PATH=/usr/bin:/bin"]}, Extras()


def client() -> tuple[dict, dict, Extras]:
    files = with_libraries({"/bin/curl": installed("curl", "curl")})
    busybox = installed("busybox", "busybox-static")
    files["/bin/sh"] = files["/bin/busybox"] = busybox
    # /tmp: where a test's load loops look for their stop file.
    return files, {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"]}, Extras(directories={"/tmp": 0o1777})


# By image name without tag or digest, as the manifests write it.
IMAGES = {
    "ghcr.io/greeter-dev/greeter-host": greeter_host,
    "redis": redis,
    CLIENT_IMAGE.rsplit(":", 1)[0]: client,
}


def publish(cluster, directory: Path, reference: str) -> None:
    """Builds and publishes the image `reference` names (a tag, not a digest)."""
    name = reference.rsplit(":", 1)[0]
    assert name in IMAGES, f"the cluster tests cannot build {reference}"
    files, config, extras = IMAGES[name]()
    archive = directory / (name.replace("/", "_") + ".tar")
    write_archive(archive, reference, files, config, extras)
    cluster.publish(archive, reference)
