"""kube/overlays/dev meets spin-operator (v0.6.1, its webhooks active): the first deploy as
kube/README.md gives it (kube/deploy, the `dev` fixture) succeeds, a second apply changes
nothing, and the operator turns the SpinApp into its Deployment and Service.

What no cluster here shows: the SpinApp's pods running. Their executor is SpinKube's shim,
which cannot be built from any registry these machines reach; greeter-host as an executor
is its own issue.
"""

import yaml

from kube.manifests import of_kind, one, render_path

NAMESPACE = "greeter"


def test_a_second_apply_changes_nothing(dev, cluster):
    result = cluster.kubectl("diff", "-k", str(dev.overlay), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_operator_deploys_the_spinapp_as_its_executor_says(dev, cluster):
    objects = render_path(dev.overlay)
    app = one(objects, "SpinApp", "greeter")
    executor = one(objects, "SpinAppExecutor", app["spec"]["executor"])
    deployment = yaml.safe_load(cluster.kubectl("-n", NAMESPACE, "get", "deployment", "greeter", "-o", "yaml").stdout)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == app["spec"]["image"]
    assert pod["runtimeClassName"] == executor["spec"]["deploymentConfig"]["runtimeClassName"]
    assert pod["serviceAccountName"] == app["spec"]["serviceAccountName"]
    service = yaml.safe_load(cluster.kubectl("-n", NAMESPACE, "get", "service", "greeter", "-o", "yaml").stdout)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_webhook_refuses_a_spinapp_whose_executor_it_has_not_seen(dev, cluster):
    """Why kube/deploy applies the executor first and waits: the same SpinApp, naming an
    executor the operator does not know, is refused."""
    app = of_kind(render_path(dev.overlay), "SpinApp")[0]
    app["metadata"] = {"name": "unseen-executor", "namespace": NAMESPACE}
    app["spec"]["executor"] = "not-applied-yet"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(app), check=False)
    assert result.returncode != 0
    assert 'spec.executor: Invalid value: "not-applied-yet": executor does not exist in namespace' in result.stderr
