"""The SpinApp autoscaled as prod has it (kube/components/autoscaling-hpa, through
tests/cluster/autoscaled): on metrics-server's figures, the HPA adds replicas to the
operator's Deployment under load, without a failed request, and removes them once the load
ends (after the variant's 10 s window; prod waits 300 s).

Runs last (conftest.py): it leaves dev's SpinApp autoscaled.
"""

import json
import threading
import time
from pathlib import Path

from cluster.registry import served_from
from cluster.test_spinkube import APP_URL, NAMESPACE
from cluster.test_workloads import STOP_LOAD, load
from kube.manifests import DEPLOY

AUTOSCALED = Path(__file__).with_name("autoscaled")
# Bounds the load; the test stops it as soon as the HPA has scaled out.
MAX_LOAD_S = 180
SCALE_TIMEOUT_S = 180.0


def replicas(cluster) -> int:
    """The replicas the HPA asks of the SpinApp's Deployment."""
    return int(cluster.kubectl("-n", NAMESPACE, "get", "deployment", "greeter", "-o", "jsonpath={.spec.replicas}").stdout)


def wait_for(cluster, what: str, done) -> None:
    """Polls `done(replicas)` until true; fails with the HPA's own account otherwise."""
    deadline = time.monotonic() + SCALE_TIMEOUT_S
    while not done(replicas(cluster)):
        if time.monotonic() > deadline:
            described = cluster.kubectl("-n", NAMESPACE, "describe", "hpa", "greeter", check=False).stdout
            raise AssertionError(f"{what}: not after {SCALE_TIMEOUT_S:.0f} s\n{described}")
        time.sleep(2)


def test_the_hpa_scales_the_spinapp_out_under_load_and_back_in(dev, cluster, metrics_server, tmp_path):
    cluster.client.script(str(DEPLOY), str(served_from(AUTOSCALED, cluster.registry, tmp_path / "autoscaled")))
    hpa = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "hpa", "greeter", "-o", "json").stdout)["spec"]
    minimum, maximum = hpa["minReplicas"], hpa["maxReplicas"]
    wait_for(cluster, f"the HPA keeps its minimum of {minimum}", lambda count: count == minimum)
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/greeter", "--timeout=120s")

    outcome = {}
    clients = threading.Thread(target=lambda: outcome.update(counts=load(dev.client, f"{APP_URL}/", MAX_LOAD_S, 4)))
    clients.start()
    try:
        wait_for(cluster, "the HPA scales out under load", lambda count: count > minimum)
        assert replicas(cluster) <= maximum
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/greeter", "--timeout=120s")
    finally:
        dev.client("busybox", "touch", STOP_LOAD)
        clients.join()
    answered, failed = outcome["counts"]
    assert answered > 100 and failed == [], outcome

    wait_for(cluster, f"the HPA scales back in to {minimum} once the load ends", lambda count: count == minimum)
