"""checkov's Kubernetes checks pass on every render, but for the skips of one file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kube.manifests import KUBE, KUSTOMIZATIONS, render

SKIPS_FILE = KUBE / "checkov-skips.yaml"


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> list[dict]:
    """checkov's failed checks over all renders: one run, as checkov starts slowly."""
    renders = tmp_path_factory.mktemp("renders")
    for name in KUSTOMIZATIONS:
        (renders / f"{name}.yaml").write_text(yaml.safe_dump_all(render(name)))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("checkov")), "--directory", str(renders),
         "--framework", "kubernetes", "--output", "json", "--quiet", "--skip-download"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE", "HOME": str(renders)},
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["resource_count"] > 0
    return report["results"]["failed_checks"]


def skips() -> list[dict]:
    return yaml.safe_load(SKIPS_FILE.read_text())


def covers(skip: dict, finding: dict) -> bool:
    return skip["id"] == finding["check_id"] and finding["resource"] in skip.get("resources", [finding["resource"]])


def test_every_skip_has_a_reason():
    assert all(skip.get("reason", "").strip() and skip.get("check") for skip in skips())


def test_no_finding_is_left_unexplained(findings):
    unexplained = {
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({Path(f['file_path']).stem})"
        for f in findings
        if not any(covers(skip, f) for skip in skips())
    }
    assert unexplained == set()


def test_every_skip_is_still_needed(findings):
    for skip in skips():
        for resource in skip.get("resources", [None]):
            assert any(covers(skip, f) and resource in (None, f["resource"]) for f in findings), (skip["id"], resource)


def test_nothing_is_skipped_elsewhere():
    inline = [path for path in KUBE.rglob("*.yaml") if path != SKIPS_FILE and "checkov" in path.read_text()]
    assert inline == []
