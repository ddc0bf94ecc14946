"""OCI image archives written without Docker, for `ctr images import`: one uncompressed layer
of the files and directories given (extended attributes such as file capabilities kept, as
containerd applies them), an image config, and the image's name as containerd reads it.
"""

import hashlib
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def with_libraries(files: dict[str, Path]) -> dict[str, Path]:
    """`files` and every shared library their dynamically linked programs load (as ldd
    lists them, the dynamic loader included), at the paths the programs look for them."""
    found = dict(files)
    for local in files.values():
        listed = subprocess.run(["ldd", str(local)], capture_output=True, text=True, check=False).stdout
        for path in re.findall(r"(/\S+) \(0x", listed):
            found[path] = Path(path)
    return found


@dataclass
class Extras:
    """What a layer holds beyond plain files: directories by mode, extended attributes."""

    directories: dict[str, int] = field(default_factory=dict)
    xattrs: dict[str, dict[str, bytes]] = field(default_factory=dict)


def layer(files: dict[str, Path], extras: Extras) -> bytes:
    """A layer holding each local file at its path in the image (mode kept, owner root;
    a symbolic link is stored as the file it names), and `extras`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for inside, mode in sorted(extras.directories.items()):
            info = tarfile.TarInfo(inside.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for inside, local in sorted(files.items()):
            local = local.resolve()
            info = tar.gettarinfo(str(local), arcname=inside.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            # Binary values pass through PAX records as surrogate-escaped text.
            info.pax_headers = {f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                                for name, value in extras.xattrs.get(inside, {}).items()}  # fmt: skip
            with open(local, "rb") as content:
                tar.addfile(info, content)
    return buffer.getvalue()


def write_archive(path: Path, name: str, files: dict[str, Path], config: dict, extras: Extras | None = None) -> None:
    """An OCI image layout archive at `path`: image `name` (a full reference), its one layer
    holding `files` and `extras`, and `config` as the image config's `config` (Entrypoint,
    Env, ...)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    tar_layer = layer(files, extras or Extras())
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob(json.dumps(image_config).encode(), OCI_CONFIG),
        "layers": [blob(tar_layer, OCI_LAYER)],
    }
    descriptor = blob(json.dumps(manifest).encode(), OCI_MANIFEST)
    descriptor["annotations"] = {"io.containerd.image.name": name}
    index = {"schemaVersion": 2, "manifests": [descriptor]}
    with tarfile.open(path, "w") as archive:
        entries = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index).encode(),
            **{f"blobs/sha256/{digest.removeprefix('sha256:')}": data for digest, data in blobs.items()},
        }
        for entry, data in entries.items():
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
