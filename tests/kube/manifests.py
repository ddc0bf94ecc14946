"""kube/ rendered and validated offline: the module the kube and delivery tests share.

Every kustomization is rendered with `kubectl kustomize`, and every object it yields is
checked against a schema that rejects unknown fields, as the API server does:
- built-in kinds against the Kubernetes OpenAPI schemas of PyPI kubernetes-validate (its
  "strict" variant);
- SpinApp and SpinAppExecutor against the CRDs of the pinned spin-operator release (its Go
  module, as tests/cluster/addons/go.mod pins it);
- the other custom resources (Gateway API, cert-manager, KEDA, prometheus-operator, Argo CD,
  External Secrets) with the validators npm @kubernetes-models/* generates from their CRDs,
  run by crd-models/validate.mjs (installed into the cache by install-crd-models).
A kind none of these knows is an error, never skipped.
"""

import copy
import functools
import importlib.resources
import json
import os
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import referencing
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "kube"
# The Go module of the SpinKube release the tests pin (tests/cluster/addons/go.mod): its
# CRDs validate SpinApps here and are installed into the test cluster, which runs its operator.
SPIN_OPERATOR = "github.com/spinkube/spin-operator"
# What kube/README.md has a newcomer run to apply an overlay.
DEPLOY = KUBE / "deploy"
ADDONS_MODULE = REPO / "tests" / "cluster" / "addons"
CACHE = Path(os.environ.get("GREETER_CACHE", Path.home() / ".cache" / "greeter"))
CRD_MODELS = CACHE / "crd-models" / "node_modules"
VALIDATE_MJS = Path(__file__).with_name("crd-models") / "validate.mjs"

# The Kubernetes the manifests are validated against (the cluster tests run the same minor).
KUBERNETES_VERSION = "1.32"

OVERLAYS = ("dev", "prod", "us", "eu", "asia")
REGIONS = ("us", "eu", "asia")
PRODUCTION = ("prod", *REGIONS)
# Every kustomization that is rendered and checked: the overlays, the per-cluster setup, the
# GitOps manifests, and the variants that render the alternative components.
KUSTOMIZATIONS = {
    **{name: KUBE / "overlays" / name for name in OVERLAYS},
    "cluster": KUBE / "cluster",
    "argocd": KUBE / "argocd",
    "alternatives": Path(__file__).with_name("variants") / "alternatives",
    "greeter-host-only": Path(__file__).with_name("variants") / "greeter-host-only",
}

# The kustomizations that deploy the app (not the per-cluster setup nor Argo CD).
APP_RENDERS = (*OVERLAYS, "alternatives", "greeter-host-only")

APP_IMAGE = "ghcr.io/greeter-dev/greeter"
HOST_IMAGE = "ghcr.io/greeter-dev/greeter-host"


def release_tag() -> str:
    """The tag every image and release reference carries: `v` + spin.toml's version."""
    manifest = tomllib.loads((REPO / "spin.toml").read_text())
    return "v" + manifest["application"]["version"]


# --- rendering ---------------------------------------------------------------------------


@functools.cache
def render(name: str) -> tuple[dict, ...]:
    """The objects of one kustomization of KUSTOMIZATIONS (cached: treat as read-only)."""
    return tuple(render_path(KUSTOMIZATIONS[name]))


def render_path(path: Path) -> list[dict]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def gateway_values(path: Path) -> dict | None:
    """The data of the gateway.yaml (ConfigMap `gateway`, never applied) a kustomization
    lists or builds on: the cluster's Gateway and the namespace of its proxies."""
    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
    for entry in kustomization.get("resources", []):
        if entry == "gateway.yaml":
            return yaml.safe_load((path / entry).read_text())["data"]
        if (path / entry).is_dir() and (found := gateway_values((path / entry).resolve())):
            return found
    return None


def ident(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata'].get('name', '?')}"


def of_kind(objects, kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects, kind: str, name: str) -> dict:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes' label selector: every `matchLabels` pair and every `matchExpressions`
    requirement holds (so an empty selector selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for requirement in selector.get("matchExpressions", []):
        key, values = requirement["key"], requirement.get("values", [])
        holds = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[requirement["operator"]]
        if not holds:
            return False
    return True


def pod_labels(objects) -> dict[str, dict]:
    """Pod labels by workload: SpinApp pods (podLabels plus the operator's) and templates."""
    labels = {
        ident(app): {**app["spec"].get("podLabels", {}), "core.spinkube.dev/app-name": app["metadata"]["name"]}
        for app in of_kind(objects, "SpinApp")
    }
    for obj, _ in pod_specs(objects):
        labels[ident(obj)] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def pod_specs(objects):
    """(object, pod spec) of every workload with a pod template."""
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job") and template:
            yield obj, template["spec"]


def image_references(objects) -> list[tuple[str, str]]:
    """(object, image) for every image an object runs: SpinApps, the executors' images and
    pod templates."""
    refs = [(ident(obj), obj["spec"]["image"]) for obj in of_kind(objects, "SpinApp")]
    for obj in of_kind(objects, "SpinAppExecutor"):
        if "spinImage" in obj["spec"].get("deploymentConfig", {}):
            refs.append((ident(obj), obj["spec"]["deploymentConfig"]["spinImage"]))
    for obj, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            refs.append((ident(obj), container["image"]))
    return refs


# --- schema validation -------------------------------------------------------------------

SPINKUBE_CRDS = {
    "SpinApp": "core.spinkube.dev_spinapps.yaml",
    "SpinAppExecutor": "core.spinkube.dev_spinappexecutors.yaml",
}


@functools.cache
def go_module_directory(module: str, pinned_by: Path = ADDONS_MODULE) -> Path:
    """Where the Go module cache holds `module` at the version the Go module in directory
    `pinned_by` pins (tests/cluster/addons by default; .ci/setup fetched it, building the
    add-ons)."""
    listed = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=pinned_by,
                            capture_output=True, text=True, check=False)  # fmt: skip
    directory = Path(listed.stdout.strip())
    assert listed.returncode == 0 and directory.is_dir(), f"{module} is not in the Go module cache: {listed.stderr}"
    return directory


def spinkube_crds() -> Path:
    """The directory of the pinned release's CRDs."""
    return go_module_directory(SPIN_OPERATOR) / "config" / "crd" / "bases"


def schema_errors(objects) -> dict[str, list[str]]:
    """Schema errors by object ("Kind/name"); objects without errors are left out."""
    errors: dict[str, list[str]] = {}
    third_party = []
    for obj in objects:
        if obj.get("apiVersion", "").startswith("core.spinkube.dev/"):
            found = spinkube_errors(obj)
        else:
            found = builtin_errors(obj)
            if found is None:
                third_party.append(obj)
                continue
        if found:
            errors.setdefault(ident(obj), []).extend(found)
    for obj, found in zip(third_party, model_errors(third_party)):
        if found:
            errors.setdefault(ident(obj), []).extend(found)
    return errors


def builtin_errors(obj: dict) -> list[str] | None:
    """Errors against the Kubernetes OpenAPI schema; None when the kind is not built in."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path)) or '(root)'}: {error.message}"]
    return []


def spinkube_errors(obj: dict) -> list[str]:
    kind = obj.get("kind")
    if kind not in SPINKUBE_CRDS:
        return [f"no SpinKube CRD for {kind}"]
    validator = spinkube_validator(kind, obj["apiVersion"].split("/")[1])
    return [
        f"{'.'.join(map(str, error.path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"


@functools.cache
def spinkube_validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    """A JSON Schema validator for one SpinKube CRD version, closed to unknown fields.

    The CRD's openAPIV3Schema is structural, and the API server drops or rejects fields it
    does not define, so every object schema gets additionalProperties: false (unless it says
    x-kubernetes-preserve-unknown-fields); metadata is checked as a strict ObjectMeta.
    """
    crd = yaml.safe_load((spinkube_crds() / SPINKUBE_CRDS[kind]).read_text())
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in versions, f"{kind} has no version {version} (has {sorted(versions)})"
    schema = closed(versions[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {
        "$ref": f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    definitions = json.loads(
        importlib.resources.files("kubernetes_validate")
        .joinpath(f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict/_definitions.json")
        .read_text()
    )
    registry = referencing.Registry().with_resource(
        K8S_DEFINITIONS, referencing.jsonschema.DRAFT202012.create_resource(definitions)
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def closed(schema: dict) -> dict:
    """A copy of an OpenAPI v3 schema whose objects reject properties they do not define."""
    schema = copy.copy(schema)
    if "properties" in schema:
        schema["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = closed(schema["additionalProperties"])
    if "items" in schema:
        schema["items"] = closed(schema["items"])
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema:
            schema[keyword] = [closed(s) for s in schema[keyword]]
    return schema


def model_errors(objects: list[dict]) -> list[list[str]]:
    """Errors of third-party custom resources, from the @kubernetes-models validators."""
    if not objects:
        return []
    if not CRD_MODELS.is_dir():
        raise AssertionError(
            f"{CRD_MODELS} is missing: run tests/kube/install-crd-models (.ci/setup does)"
        )
    result = subprocess.run(
        ["node", str(VALIDATE_MJS), str(CRD_MODELS)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"validate.mjs failed:\n{result.stderr}")
    return json.loads(result.stdout)
