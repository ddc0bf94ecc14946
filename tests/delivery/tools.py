"""The pinned linters of tests/delivery (installed into the venv by tests/requirements.txt)."""

import subprocess
import sys
from pathlib import Path

from kube.manifests import REPO

BIN = Path(sys.executable).parent
WORKFLOWS = REPO / ".github" / "workflows"


def run(tool: str, *args, cwd=REPO) -> subprocess.CompletedProcess:
    """Runs a venv tool offline, with only the venv's tools and the system's on PATH."""
    return subprocess.run(
        [str(BIN / tool), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "NO_COLOR": "1"},
    )
