"""Every object kube/ renders matches its schema, and a broken object does not."""

import copy
from pathlib import Path

import pytest
import yaml

from kube.manifests import KUBE, KUSTOMIZATIONS, one, render, schema_errors


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_matches_its_schema(name):
    errors = schema_errors(render(name))
    assert not errors, "\n".join(f"{name}: {obj}: {'; '.join(e)}" for obj, e in errors.items())


def set_path(obj, path, value):
    *parents, last = path
    for key in parents:
        obj = obj[key]
    obj[last] = value


# (what is broken, kustomization, kind, name, path, value): each must be rejected.
BROKEN = [
    ("unknown container field", "dev", "Deployment", "greeter-host",
     ("spec", "template", "spec", "containers", 0, "imagePolicy"), "Always"),
    ("port as text", "dev", "Service", "greeter-host", ("spec", "ports", 0, "port"), "eighty"),
    ("unknown SpinApp field", "prod", "SpinApp", "greeter", ("spec", "replica"), 3),
    ("unknown SpinApp metadata", "prod", "SpinApp", "greeter", ("metadata", "label"), {}),
    ("probe port not in the CRD", "dev", "SpinApp", "greeter",
     ("spec", "checks", "readiness", "httpGet", "port"), 80),
    ("unknown executor field", "dev", "SpinAppExecutor", "containerd-shim-spin",
     ("spec", "runtimeClass"), "wasmtime-spin-v2"),
    ("unknown HTTPRoute field", "prod", "HTTPRoute", "greeter",
     ("spec", "rules", 0, "backendRefs", 0, "portNumber"), 80),
    ("replica count as text", "alternatives", "ScaledObject", "greeter",
     ("spec", "maxReplicaCount"), "ten"),
    ("unknown Certificate field", "us", "Certificate", "greeter-tls", ("spec", "dnsName"), "x"),
    ("unknown ApplicationSet field", "argocd", "ApplicationSet", "greeter",
     ("spec", "template", "spec", "source", "revision"), "main"),
    ("unknown ServiceMonitor field", "dev", "ServiceMonitor", "greeter-host",
     ("spec", "endpoints", 0, "scrapePath"), "/metrics"),
    ("unknown ExternalSecret field", "eu", "ExternalSecret", "greeter-redis",
     ("spec", "target", "secretName"), "greeter-redis"),
    ("unknown PrometheusRule field", "us", "PrometheusRule", "greeter",
     ("spec", "groups", 0, "evaluation_interval"), "1m"),
    ("unknown executor telemetry field", "prod", "SpinAppExecutor", "containerd-shim-spin",
     ("spec", "deploymentConfig", "otel", "endpoint"), "http://otel-collector:4318"),
]


@pytest.mark.parametrize(
    "name, kind, obj_name, path, value", [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_a_broken_object_is_rejected(name, kind, obj_name, path, value):
    broken = copy.deepcopy(one(render(name), kind, obj_name))
    set_path(broken, path, value)
    assert f"{kind}/{obj_name}" in schema_errors([broken])


def test_a_kind_without_a_schema_is_rejected():
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "Widget/w" in schema_errors([unknown])


def referenced_dirs(kustomization_dir: Path) -> set[Path]:
    """Every directory a kustomization builds on, through resources and components."""
    seen = {kustomization_dir.resolve()}
    spec = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    for entry in spec.get("resources", []) + spec.get("components", []):
        target = kustomization_dir / entry
        if target.is_dir():
            seen |= referenced_dirs(target)
    return seen


def test_every_component_is_rendered_by_some_kustomization():
    rendered = set().union(*(referenced_dirs(path) for path in KUSTOMIZATIONS.values()))
    components = {path.resolve() for path in (KUBE / "components").iterdir() if path.is_dir()}
    assert components - rendered == set()
