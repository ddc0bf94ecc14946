"""kube/overlays/dev meets spin-operator (v0.6.1, its webhooks active), with greeter-host as
the SpinApp's executor (kube/components/executor-greeter-host; SpinKube's shim cannot be
built here): the first deploy as kube/README.md gives it (kube/deploy, the `dev` fixture)
succeeds, a second apply changes nothing, the operator turns the SpinApp into a Deployment
running the greeter-host image with its own arguments, and that pod pulls the app from the
registry, binds port 80 as uid 65532, serves through the SpinApp's Service, shares its store
with the greeter-host Deployment, and rolls without a failed request.
"""

import json
import threading
import time

import yaml

from cluster.test_workloads import HOST_URL, READY_TIMEOUT, load, main_process, request
from kube.manifests import of_kind, one, render_path

NAMESPACE = "greeter"
APP_URL = f"http://greeter.{NAMESPACE}.svc.cluster.local"
APP_SELECTOR = "core.spinkube.dev/app-name=greeter"


def test_a_second_apply_changes_nothing(dev, cluster):
    result = cluster.kubectl("diff", "-k", str(dev.overlay), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_operator_deploys_the_spinapp_as_its_executor_says(dev, cluster):
    objects = render_path(dev.overlay)
    app = one(objects, "SpinApp", "greeter")
    executor = one(objects, "SpinAppExecutor", app["spec"]["executor"])
    deployment = yaml.safe_load(cluster.kubectl("-n", NAMESPACE, "get", "deployment", "greeter", "-o", "yaml").stdout)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == executor["spec"]["deploymentConfig"]["spinImage"]
    assert container["args"] == ["up", "--listen", "0.0.0.0:80", "-f", app["spec"]["image"],
                                 "--runtime-config-file", "/runtime-config.toml"]  # fmt: skip
    assert pod["serviceAccountName"] == app["spec"]["serviceAccountName"]
    service = yaml.safe_load(cluster.kubectl("-n", NAMESPACE, "get", "service", "greeter", "-o", "yaml").stdout)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_spinapp_serves_on_greeter_host_through_its_service(dev, cluster):
    status = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "spinapp", "greeter", "-o", "json").stdout)["status"]
    assert status["readyReplicas"] == 1, status
    assert request(dev.client, "GET", f"{APP_URL}/") == (200, "hello world!")
    # One store for both runtimes: written through the SpinApp, read through greeter-host.
    created, body = request(dev.client, "POST", f"{APP_URL}/api/greetings", {"name": "SpinKube"})
    assert created == 201, body
    greeting = json.loads(body)
    status, body = request(dev.client, "GET", f"{HOST_URL}/api/greetings/{greeting['id']}")
    assert (status, json.loads(body)) == (200, greeting)


def test_a_greeting_outlives_the_spinapps_pods(dev, cluster):
    created, body = request(dev.client, "POST", f"{APP_URL}/api/greetings", {"name": "Restarted"})
    assert created == 201, body
    greeting = json.loads(body)
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", "-l", APP_SELECTOR, "--wait=true")
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/greeter", f"--timeout={READY_TIMEOUT}")
    status, body = request(dev.client, "GET", f"{APP_URL}/api/greetings/{greeting['id']}")
    assert (status, json.loads(body)) == (200, greeting)


def test_the_executor_binds_port_80_unprivileged_and_keeps_no_capability(dev, cluster):
    """spin-operator gives its pods no securityContext: the image's user (65532) binds port
    80 through the binary's permitted-only file capability, then drops it."""
    process = main_process(cluster.kubectl, APP_SELECTOR)
    fields = (line.split(":", 1) for line in (process / "status").read_text().splitlines())
    status = {key: value.strip() for key, value in fields}
    assert status["Uid"].split()[:2] == ["65532", "65532"]
    assert status["CapEff"] == "0000000000000000"
    assert int(status["CapPrm"], 16) & (1 << 10) == 0, "CAP_NET_BIND_SERVICE is given up"


def test_a_spinapp_rollout_under_load_fails_no_request(dev, cluster):
    """Clients keep sending while the SpinApp's pods are replaced: the readiness probe holds
    traffic back from the new pod until it has pulled the app and serves, and no pod is
    restarted (OOM-killed or crashed). spin-operator's pods have no preStop
    hook; greeter-host's default shutdown delay stands in for one where a terminating pod
    leaves the endpoints later than on this one node (tests/README.md)."""
    outcome = {}
    clients = threading.Thread(target=lambda: outcome.update(counts=load(dev.client, f"{APP_URL}/", 45, 4)))
    started = time.monotonic()
    clients.start()
    time.sleep(3)
    try:
        patch = {"spec": {"podAnnotations": {"greeter.dev/rollout": str(time.time())}}}
        cluster.kubectl("-n", NAMESPACE, "patch", "spinapp", "greeter", "--type=merge", "-p", json.dumps(patch))
        wait_for_new_revision(cluster)
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/greeter", f"--timeout={READY_TIMEOUT}")
        rolled_out = time.monotonic() - started
    finally:
        clients.join()
    assert rolled_out < 35, f"the rollout took {rolled_out:.0f} s"
    answered, failed = outcome["counts"]
    assert answered > 100 and failed == [], outcome
    restarts = cluster.kubectl("-n", NAMESPACE, "get", "pod", "-l", APP_SELECTOR, "-o",
                               "jsonpath={.items[*].status.containerStatuses[*].restartCount}").stdout.split()  # fmt: skip
    assert set(restarts) == {"0"}, f"no pod restarted (OOM-killed or crashed): {restarts}"


def wait_for_new_revision(cluster):
    """Until the operator has written the patched pod template into its Deployment."""
    deadline = time.monotonic() + 60
    while "greeter.dev/rollout" not in cluster.kubectl("-n", NAMESPACE, "get", "deployment", "greeter", "-o",
                                                        "jsonpath={.spec.template.metadata.annotations}").stdout:  # fmt: skip
        assert time.monotonic() < deadline, "spin-operator did not update its Deployment"
        time.sleep(1)


def test_the_webhook_refuses_a_spinapp_whose_executor_it_has_not_seen(dev, cluster):
    """Why kube/deploy applies the executor first and waits: the same SpinApp, naming an
    executor the operator does not know, is refused."""
    app = of_kind(render_path(dev.overlay), "SpinApp")[0]
    app["metadata"] = {"name": "unseen-executor", "namespace": NAMESPACE}
    app["spec"]["executor"] = "not-applied-yet"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(app), check=False)
    assert result.returncode != 0
    assert 'spec.executor: Invalid value: "not-applied-yet": executor does not exist in namespace' in result.stderr
