"""What the cluster tests need of a cluster they do not start (kind in e2e.yml): checked
without one."""

from pathlib import Path

import pytest

from cluster.cluster import NODE_EXEC_VARIABLE, REGISTRY_CA_VARIABLE, REGISTRY_VARIABLE, GivenCluster
from cluster.conftest import DEV_OVERLAY
from cluster.controlplane import ClusterError
from cluster.registry import REGISTRY, served_from
from kube.manifests import of_kind, render_path

ELSEWHERE = "172.30.0.10:5000"


def test_a_given_cluster_without_its_registry_fails_naming_what_is_missing(tmp_path):
    with pytest.raises(ClusterError, match=REGISTRY_VARIABLE):
        GivenCluster(tmp_path / "kubeconfig", None, {REGISTRY_CA_VARIABLE: "ca.crt", NODE_EXEC_VARIABLE: "true"})


def test_a_given_clusters_registry_serves_the_spinapp_and_nothing_else_changes(tmp_path):
    ours = render_path(DEV_OVERLAY)
    theirs = render_path(served_from(DEV_OVERLAY, ELSEWHERE, tmp_path / "dev"))
    [app] = of_kind(theirs, "SpinApp")
    assert app["spec"]["image"] == of_kind(ours, "SpinApp")[0]["spec"]["image"].replace(REGISTRY, ELSEWHERE)
    assert app["spec"]["image"].startswith(f"{ELSEWHERE}/")
    app["spec"]["image"] = of_kind(ours, "SpinApp")[0]["spec"]["image"]
    assert theirs == ours


def test_our_registry_serves_the_overlay_as_it_is(tmp_path):
    assert served_from(DEV_OVERLAY, REGISTRY, tmp_path) == DEV_OVERLAY
    assert not list(Path(tmp_path).iterdir())
