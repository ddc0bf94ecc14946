"""kube/README.md's install steps name the release of everything they install, so a cluster
set up today gets what the manifests and tests were written against."""

import re

from .manifests import KUBE

README = (KUBE / "README.md").read_text()


def commands(program: str) -> list[str]:
    """Each `program` command of the README's shell blocks, its continued lines joined."""
    joined = re.sub(r"\\\n\s*", " ", README)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith(program)]


def test_every_chart_is_installed_at_a_pinned_version():
    installs = commands("helm install")
    assert len(installs) >= 7
    assert [c for c in installs if not re.search(r"--version \S+", c)] == []


def test_every_manifest_applied_from_the_web_is_a_tagged_release():
    urls = [url for c in commands("kubectl apply") for url in re.findall(r"https://\S+", c)]
    assert urls
    assert [u for u in urls if not re.search(r"/releases/download/(v\d+\.\d+\.\d+|\$\w+)/", u)] == []
