"""Every kustomization passes a real API server's checks: `kubectl apply --dry-run=server`,
with every CRD installed, gives no error and no warning (strict field validation, the CRDs'
schemas and CEL rules, PodSecurity). On the tests' own cluster this runs before any webhook
exists; on a given one spin-operator's webhooks are there, and see each render's executors
first, as kube/deploy makes them. Broken objects show that each of those checks can fail
here.
"""

import copy

import pytest
import yaml

from kube.manifests import KUSTOMIZATIONS, one, render

# Namespaces that objects of a render live in and that the cluster, not the render, provides.
PROVIDED_NAMESPACES = {
    "argocd": "made by Argo CD's install, which the argocd kustomization's objects extend",
}


def dump(objects) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def dry_run(cluster, objects):
    """Applies the render's namespaces for real (and its executors, where spin-operator's
    webhooks are active), then everything with --dry-run=server."""
    namespaces = [obj for obj in objects if obj["kind"] == "Namespace"]
    made = {obj["metadata"]["name"] for obj in namespaces}
    used = {obj["metadata"].get("namespace") for obj in objects} - {None} - made
    provided = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                for name in sorted(used & PROVIDED_NAMESPACES.keys())]  # fmt: skip
    kubectl = cluster.kubectl
    if namespaces or provided:
        cluster.client.settle(sorted(made | used))
        kubectl("apply", "-f", "-", input=dump([*provided, *namespaces]))
    executors = [obj for obj in objects if obj["kind"] == "SpinAppExecutor"]
    if executors and "spin-operator" in kubectl("get", "validatingwebhookconfigurations", "-o", "name").stdout:
        kubectl("apply", "-f", "-", input=dump(executors))
        for executor in executors:
            kubectl("-n", executor["metadata"]["namespace"], "wait", f"spinappexecutor/{executor['metadata']['name']}",
                    "--for=jsonpath={.metadata.finalizers[0]}=core.spinkube.dev/finalizer", "--timeout=60s")  # fmt: skip
    return kubectl("apply", "--dry-run=server", "-f", "-", input=dump(objects), check=False)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_render_applies_cleanly(cluster, name):
    result = dry_run(cluster, list(render(name)))
    assert result.returncode == 0, f"{name}:\n{result.stderr}"
    assert "Warning" not in result.stderr, f"{name}:\n{result.stderr}"


def broken(name, kind, object_name, mutate):
    """The render with one object changed by `mutate`, keeping only that object and the
    render's namespaces."""
    objects = copy.deepcopy(list(render(name)))
    target = one(objects, kind, object_name)
    mutate(target)
    return [obj for obj in objects if obj["kind"] == "Namespace"] + [target]


def add_unknown_container_field(deployment):
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"


def relative_path_match(route):
    route["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "api"}}]


def drop_security_contexts(deployment):
    pod = deployment["spec"]["template"]["spec"]
    pod.pop("securityContext", None)
    for container in pod["containers"]:
        container.pop("securityContext", None)


# (what is broken, kustomization, kind, name, change, what the API server says)
REFUSED = [
    ("unknown field", "dev", "Deployment", "greeter-host", add_unknown_container_field,
     'unknown field "spec.template.spec.containers[0].imagePolicy"'),
    ("value a CEL rule forbids", "prod", "HTTPRoute", "greeter", relative_path_match,
     "must be an absolute path"),
]  # fmt: skip


@pytest.mark.parametrize("what, name, kind, object_name, mutate, said", REFUSED,
                         ids=[case[0] for case in REFUSED])  # fmt: skip
def test_the_api_server_refuses_a_broken_object(cluster, what, name, kind, object_name, mutate, said):
    result = dry_run(cluster, broken(name, kind, object_name, mutate))
    assert result.returncode != 0, f"{what} was accepted"
    assert said in result.stderr


def test_podsecurity_warns_of_a_pod_spec_that_restricted_forbids(cluster):
    objects = broken("dev", "Deployment", "greeter-host", drop_security_contexts)
    result = dry_run(cluster, objects)
    assert result.returncode == 0, result.stderr
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr
