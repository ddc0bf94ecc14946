"""kube/overlays/dev deployed (the `dev` fixture): the greeter-host Deployment and the Redis
StatefulSet run under a real kubelet with their hardening, pass their probes and serve
through their Services, by name (the cluster's DNS); a greeting survives the deletion of
every pod that held or served it; greeter-host rolls to a new image under load without a
failed request, and its disruption budget refuses an eviction beyond it.
"""

import base64
import contextlib
import json
import re
import threading
import time
from pathlib import Path

from cluster.workload_images import publish

NAMESPACE = "greeter"
HOST_URL = f"http://greeter-host.{NAMESPACE}.svc.cluster.local"
METRICS_URL = f"{HOST_URL}:9090/metrics"
READY_TIMEOUT = "180s"


def request(client, method, url, body=None):
    """(status, body) of one HTTP request from the client pod."""
    argv = ["curl", "-sS", "--max-time", "10", "-X", method, "-w", "\n%{http_code}", url]
    if body is not None:
        argv += ["-H", "content-type: application/json", "--data", json.dumps(body)]
    *lines, status = client(*argv).split("\n")
    return int(status), "\n".join(lines)


def test_greeter_host_serves_through_its_service(dev):
    assert request(dev.client, "GET", f"{HOST_URL}/") == (200, "hello world!")


def restart_pods(kubectl, selector):
    kubectl("-n", NAMESPACE, "delete", "pod", "-l", selector, "--wait=true")


def test_a_greeting_survives_deleting_every_pod(dev, cluster):
    status, body = request(dev.client, "POST", f"{HOST_URL}/api/greetings", {"name": "Kubernetes"})
    assert status == 201, body
    greeting = json.loads(body)
    for workload, selector in (("statefulset/greeter-redis", "app.kubernetes.io/name=greeter-redis"),
                               ("deployment/greeter-host", "app.kubernetes.io/name=greeter-host")):  # fmt: skip
        restart_pods(cluster.kubectl, selector)
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", workload, f"--timeout={READY_TIMEOUT}")
    status, body = request(dev.client, "GET", f"{HOST_URL}/api/greetings/{greeting['id']}")
    assert (status, json.loads(body)) == (200, greeting)


def container_id(kubectl, selector: str) -> str:
    """The ID of the one container the pods matching `selector` run."""
    ids = kubectl("-n", NAMESPACE, "get", "pod", "-l", selector,
                  "-o", "jsonpath={.items[*].status.containerStatuses[*].containerID}").stdout.split()  # fmt: skip
    assert len(ids) == 1, ids
    return ids[0].split("://")[-1]


def main_process(kubectl, selector: str) -> Path:
    """/proc/<pid> of the main process of the one container the pods matching `selector`
    run, found by the container's ID in its cgroup (the node's processes are this machine's,
    under kind as under our own cluster)."""
    container = container_id(kubectl, selector)
    pids = []
    for proc in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        with contextlib.suppress(OSError):
            if container in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
    assert pids, f"no process of container {container}"
    return Path(f"/proc/{min(pids)}")


def test_greeter_host_runs_with_its_hardening(dev, cluster):
    process = main_process(cluster.kubectl, "app.kubernetes.io/name=greeter-host")
    fields = (line.split(":", 1) for line in (process / "status").read_text().splitlines())
    status = {key: value.strip() for key, value in fields}
    assert status["Name"] == "greeter-host"
    assert status["Uid"].split()[:2] == ["65532", "65532"]
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter: RuntimeDefault
    root = next(line.split() for line in (process / "mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert root[5].split(",")[0] == "ro", root


def test_greeter_host_metrics_count_requests(dev):
    request(dev.client, "GET", f"{HOST_URL}/api/health")
    status, metrics = request(dev.client, "GET", METRICS_URL)
    assert status == 200
    assert re.search(r'^greeter_http_requests_total\{[^}]*status="200"[^}]*\} [1-9]', metrics, re.M), metrics


def test_the_redis_password_is_on_no_command_line(dev, cluster):
    """Not in the arguments the container runtime starts Redis with (which every process of
    the node can read while redis-server has not yet overwritten them)."""
    secret = cluster.kubectl("-n", NAMESPACE, "get", "secret", "greeter-redis", "-o", "jsonpath={.data.password}")
    password = base64.b64decode(secret.stdout).decode()
    container = container_id(cluster.kubectl, "app.kubernetes.io/name=greeter-redis")
    args = json.loads(cluster.ctr("--namespace", "k8s.io", "containers", "info", container))["Spec"]["process"]["args"]
    assert "redis-server" in " ".join(args)
    assert not any(password in arg for arg in args), args


# Touched in the client pod, it ends the load early.
STOP_LOAD = "/tmp/stop-load"


def load(client, url: str, seconds: int, clients: int) -> tuple[int, list[str]]:
    """(answered 200, the failed) of `clients` loops each sending requests for `seconds`, or
    until STOP_LOAD exists. A failed request is told by what curl saw: `<status> exit <curl's
    exit code> at <epoch second>` (status 000 when there was no answer: exit 7 refused, 28
    timed out, 52 empty reply, 56 reset)."""
    loop = (f"end=$(( $(busybox date +%s) + {seconds} )); ok=0; "
            f"while [ $(busybox date +%s) -lt $end ] && [ ! -e {STOP_LOAD} ]; do "
            f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {url}); exit=$?; "
            f"if [ \"$code\" = 200 ]; then ok=$((ok + 1)); "
            f"else echo \"failed $code exit $exit at $(busybox date +%s)\"; fi; done; echo ok $ok")  # fmt: skip
    script = f"busybox rm -f {STOP_LOAD}; " + " & ".join(f"({loop})" for _ in range(clients)) + " & wait"
    lines = client("sh", "-c", script).splitlines()
    counts = [int(line.split()[1]) for line in lines if line.startswith("ok ")]
    assert len(counts) == clients, lines
    return sum(counts), [line.removeprefix("failed ") for line in lines if line.startswith("failed ")]


# Clients send for this long; the rollout must end early enough that the old pod's
# shutdown delay and drain (5 s + up to 20 s, kube/'s Deployment) happen under load too.
LOAD_SECONDS = 45
AFTER_ROLLOUT_S = 10


def test_a_rolling_update_under_load_fails_no_request(dev, cluster, tmp_path):
    """Clients keep sending while the image changes: the probes hold traffic back from the
    new pod until it serves (without them this fails). The shutdown delay and drain matter
    where a terminating pod leaves the endpoints later than on this one node, where it leaves
    at once: here their absence goes unseen."""
    deployment = "deployment/greeter-host"
    current = cluster.kubectl("-n", NAMESPACE, "get", deployment, "-o",
                              "jsonpath={.spec.template.spec.containers[0].image}").stdout  # fmt: skip
    changed = f"{current}-rollout"
    publish(cluster, tmp_path, changed)
    outcome = {}
    clients = threading.Thread(target=lambda: outcome.update(counts=load(dev.client, f"{HOST_URL}/", LOAD_SECONDS, 4)))
    started = time.monotonic()
    clients.start()
    time.sleep(3)
    try:
        cluster.kubectl("-n", NAMESPACE, "set", "image", deployment, f"greeter-host={changed}")
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", deployment, f"--timeout={READY_TIMEOUT}")
        rolled_out = time.monotonic() - started
    finally:
        clients.join()
        cluster.kubectl("-n", NAMESPACE, "set", "image", deployment, f"greeter-host={current}")
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", deployment, f"--timeout={READY_TIMEOUT}")
    assert rolled_out < LOAD_SECONDS - AFTER_ROLLOUT_S, f"the rollout took {rolled_out:.0f} s"
    answered, failed = outcome["counts"]
    assert answered > 100 and failed == [], outcome


def evict(kubectl, pod: str):
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NAMESPACE}}
    return kubectl("create", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction", "-f", "-",
                   input=json.dumps(eviction), check=False)  # fmt: skip


def test_the_disruption_budget_refuses_an_eviction_beyond_it(dev, cluster):
    """With two replicas (dev runs one, which may be evicted by design), draining a node may
    take one pod at a time: the second eviction is refused while the first is replaced."""
    deployment = "deployment/greeter-host"
    cluster.kubectl("-n", NAMESPACE, "scale", deployment, "--replicas=2")
    try:
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", deployment, f"--timeout={READY_TIMEOUT}")
        cluster.kubectl("-n", NAMESPACE, "wait", "pdb/greeter-host", "--timeout=60s",
                        "--for=jsonpath={.status.disruptionsAllowed}=1")  # fmt: skip
        listed = cluster.kubectl("-n", NAMESPACE, "get", "pod", "-l", "app.kubernetes.io/name=greeter-host", "-o", "json")
        pods = [pod["metadata"]["name"] for pod in json.loads(listed.stdout)["items"]
                if "deletionTimestamp" not in pod["metadata"]]  # fmt: skip
        first, second = (evict(cluster.kubectl, pod) for pod in pods)
        assert first.returncode == 0, first.stderr
        assert second.returncode != 0 and "disruption budget" in second.stderr, second.stderr
    finally:
        cluster.kubectl("-n", NAMESPACE, "scale", deployment, "--replicas=1")
