"""What a schema cannot see: names that must resolve, values that must agree."""

import re
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import yaml

from kube.manifests import (
    APP_IMAGE,
    APP_RENDERS,
    HOST_IMAGE,
    KUBE,
    KUSTOMIZATIONS,
    PRODUCTION,
    REGIONS,
    REPO,
    ident,
    gateway_values,
    image_references,
    of_kind,
    one,
    pod_labels,
    pod_specs,
    render,
    render_path,
    selects,
)

# The app's routes (README); the probes must use the two made for them.
LIVENESS, READINESS = "/api/health", "/api/ready"


def names(objects, kind):
    return {obj["metadata"]["name"] for obj in of_kind(objects, kind)}


def secret_keys(objects) -> dict[str, set[str]]:
    """Secret name -> its keys, for Secrets and for the Secrets ExternalSecrets write."""
    keys = {}
    for secret in of_kind(objects, "Secret"):
        keys[secret["metadata"]["name"]] = {*secret.get("data", {}), *secret.get("stringData", {})}
    for external in of_kind(objects, "ExternalSecret"):
        target = external["spec"]["target"]["name"]
        # A template, where there is one, makes the Secret's keys.
        template = external["spec"]["target"].get("template", {}).get("data")
        keys[target] = set(template) if template else {item["secretKey"] for item in external["spec"]["data"]}
    return keys


def dicts(node):
    """Every mapping in a nested object, the object's own included."""
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from dicts(child)
    elif isinstance(node, list):
        for child in node:
            yield from dicts(child)


def value_refs(objects):
    """(object, kind of the referenced object, name, key) of every configMapKeyRef/secretKeyRef."""
    for obj in objects:
        for node in dicts(obj.get("spec", {})):
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in node:
                    yield ident(obj), kind, node[field]["name"], node[field]["key"]


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {"app": "a"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "a", "tier": "web"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}, {"app": "b"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {"app": "a"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"tier": "web"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "a"}, False),
        ({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "a"}, False),
    ],
)
def test_selects_is_kubernetes_label_selection(selector, labels, selected):
    assert selects(selector, labels) is selected


def deployments(objects) -> set[str]:
    """Deployments in the cluster: those rendered, and the one spin-operator makes per SpinApp."""
    return names(objects, "Deployment") | names(objects, "SpinApp")


def services(objects) -> set[str]:
    """Services in the cluster: those rendered, and the one spin-operator makes per SpinApp."""
    return names(objects, "Service") | names(objects, "SpinApp")


@pytest.mark.parametrize("name", APP_RENDERS)
def test_every_config_and_secret_reference_resolves(name):
    objects = render(name)
    available = {
        "ConfigMap": {cm["metadata"]["name"]: set(cm.get("data", {})) for cm in of_kind(objects, "ConfigMap")},
        "Secret": secret_keys(objects),
    }
    missing = [
        f"{owner} -> {kind} {ref}/{key}"
        for owner, kind, ref, key in value_refs(objects)
        if key not in available[kind].get(ref, set())
    ]
    for obj, spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in available["ConfigMap"]:
                missing.append(f"{ident(obj)} -> volume ConfigMap {volume['configMap']['name']}")
    assert missing == []


@pytest.mark.parametrize("name", APP_RENDERS)
def test_every_target_and_backend_exists(name):
    objects = render(name)
    missing = []
    for scaler in of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject"):
        target = scaler["spec"]["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments(objects):
            missing.append(f"{ident(scaler)} -> {target}")
    for route in of_kind(objects, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            missing += [f"{ident(route)} -> {b['name']}" for b in rule.get("backendRefs", []) if b["name"] not in services(objects)]
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                if backend not in services(objects):
                    missing.append(f"{ident(ingress)} -> {backend}")
    for app in of_kind(objects, "SpinApp"):
        if app["spec"]["executor"] not in names(objects, "SpinAppExecutor"):
            missing.append(f"{ident(app)} -> executor {app['spec']['executor']}")
    accounts = [(ident(a), a["spec"].get("serviceAccountName")) for a in of_kind(objects, "SpinApp")]
    accounts += [(ident(obj), spec.get("serviceAccountName")) for obj, spec in pod_specs(objects)]
    missing += [f"{owner} -> {sa}" for owner, sa in accounts if sa and sa not in names(objects, "ServiceAccount")]
    for sts in of_kind(objects, "StatefulSet"):
        if sts["spec"]["serviceName"] not in names(objects, "Service"):
            missing.append(f"{ident(sts)} -> {sts['spec']['serviceName']}")
    assert missing == []


@pytest.mark.parametrize("name", APP_RENDERS)
def test_every_selector_selects_pods(name):
    objects = render(name)
    pods = pod_labels(objects)
    selectors = [(ident(pdb), pdb["spec"]["selector"]) for pdb in of_kind(objects, "PodDisruptionBudget")]
    selectors += [
        (ident(svc), {"matchLabels": svc["spec"]["selector"]})
        for svc in of_kind(objects, "Service")
        if svc["spec"].get("type") != "ExternalName"
    ]
    selectors += [(ident(np), np["spec"]["podSelector"]) for np in of_kind(objects, "NetworkPolicy")]
    assert [owner for owner, sel in selectors if not any(selects(sel, l) for l in pods.values())] == []
    for monitor in of_kind(objects, "ServiceMonitor"):
        ports = {
            port.get("name")
            for svc in of_kind(objects, "Service")
            if selects(monitor["spec"]["selector"], svc["metadata"].get("labels", {}))
            for port in svc["spec"]["ports"]
        }
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports, ident(monitor)


def probes(objects):
    """(workload, probe kind, path) of every HTTP probe."""
    for app in of_kind(objects, "SpinApp"):
        for kind, check in app["spec"].get("checks", {}).items():
            yield ident(app), kind, check["httpGet"]["path"]
    for obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            for kind in ("liveness", "readiness", "startup"):
                probe = container.get(f"{kind}Probe", {})
                if "httpGet" in probe:
                    yield ident(obj), kind, probe["httpGet"]["path"]


def test_the_app_answers_the_probe_routes(tmp_path):
    """The app itself, on greeter-host (the debug build `make test` makes), answers 200 on
    both probe paths: its router, not a copy of its routes, decides."""
    host = REPO / "target" / "debug" / "greeter-host"
    assert host.exists(), f"{host} is missing: make test builds it"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [str(host), "up", "--from", str(REPO / "spin.toml"), "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp_path)]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answers = {path: answer(f"http://127.0.0.1:{port}{path}", server) for path in (LIVENESS, READINESS)}
    finally:
        server.kill()
        server.wait()
    assert answers == {LIVENESS: 200, READINESS: 200}


def answer(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """The status of GET `url`, retried while the server starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, f"greeter-host did not serve {url}"
            time.sleep(0.2)


@pytest.mark.parametrize("name", APP_RENDERS)
def test_probes_use_the_health_and_readiness_routes(name):
    objects = render(name)
    found = list(probes(objects))
    want = {"liveness": LIVENESS, "startup": LIVENESS, "readiness": READINESS}
    assert [p for p in found if p[2] != want[p[1]]] == []
    # Every app workload has both: liveness without dependencies, readiness with Redis.
    servers = {ident(a) for a in of_kind(objects, "SpinApp")} | {
        ident(obj) for obj, _ in pod_specs(objects) if obj["metadata"]["name"] == "greeter-host"
    }
    for server in servers:
        assert {kind for owner, kind, _ in found if owner == server} >= {"liveness", "readiness"}


@pytest.mark.parametrize("name", APP_RENDERS)
def test_spinapp_checks_spell_out_their_headers(name):
    """spin-operator's mutating webhook turns an absent `httpHeaders` into `null`, which the
    API server refuses on the first apply: every check of every SpinApp gives a list."""
    checks = [(ident(app), kind, check["httpGet"].get("httpHeaders"))
              for app in of_kind(render(name), "SpinApp")
              for kind, check in app["spec"].get("checks", {}).items()]  # fmt: skip
    assert [c for c in checks if not isinstance(c[2], list)] == []


@pytest.mark.parametrize("name", APP_RENDERS)
def test_each_image_has_one_reference_and_is_pinned(name):
    refs = image_references(render(name))
    for image in (APP_IMAGE, HOST_IMAGE):
        used = {ref for _, ref in refs if ref.split(":")[0] == image}
        assert len(used) <= 1, f"{image} is referenced as {used}"
    # Ours carry a release tag; third-party images a digest.
    unpinned = [
        (owner, ref) for owner, ref in refs
        if not (re.fullmatch(r"ghcr\.io/greeter-dev/[a-z-]+:v\d+\.\d+\.\d+", ref) or "@sha256:" in ref)
    ]
    assert unpinned == []


def reads(workload: dict) -> dict[str, set[str]]:
    """The Secrets and ConfigMaps a workload reads, through key references, volumes or envFrom."""
    found = {"secret": set(), "configmap": set()}
    for node in dicts(workload["spec"]):
        for field, kind, name in (("secretKeyRef", "secret", "name"), ("configMapKeyRef", "configmap", "name"),
                                  ("secretRef", "secret", "name"), ("configMapRef", "configmap", "name"),
                                  ("secret", "secret", "secretName"), ("configMap", "configmap", "name")):  # fmt: skip
            if isinstance(node.get(field), dict) and name in node[field]:
                found[kind].add(node[field][name])
    return found


@pytest.mark.parametrize("name", APP_RENDERS)
def test_a_changed_secret_or_config_restarts_the_pods_that_read_it(name):
    """Pods read Secrets and ConfigMaps at start: each workload names every one it reads for
    Stakater Reloader, which rolls it when one changes (a SpinApp through the annotations
    spin-operator puts on its Deployment)."""
    workloads = [*of_kind(render(name), "SpinApp"), *(obj for obj, _ in pod_specs(render(name)))]
    assert workloads
    for workload in workloads:
        if workload["kind"] == "SpinApp":
            annotations = workload["spec"].get("deploymentAnnotations", {})
        else:
            annotations = workload["metadata"].get("annotations", {})
        for kind, names in reads(workload).items():
            named = annotations.get(f"{kind}.reloader.stakater.com/reload", "")
            assert set(filter(None, named.split(","))) == names, (ident(workload), kind)


@pytest.mark.parametrize("name", APP_RENDERS)
def test_pods_start_from_an_image_the_node_has(name):
    """A restart or a rollout must not need the registry when the node has the image (loaded
    into a kind node, or during a registry outage). The references never move (release tags
    are never pushed twice, third-party images are digests), so IfNotPresent is exact."""
    policies = {
        (ident(obj), container["name"]): container.get("imagePullPolicy", "IfNotPresent")
        for obj, spec in pod_specs(render(name))
        for container in spec.get("initContainers", []) + spec["containers"]
    }
    assert {key: policy for key, policy in policies.items() if policy != "IfNotPresent"} == {}


@pytest.mark.parametrize("name", PRODUCTION)
def test_production_secrets_hold_no_literal_values(name):
    objects = render(name)
    assert [ident(s) for s in of_kind(objects, "Secret")] == []
    # ... they come from the secret store instead.
    assert secret_keys(objects).keys() >= {"greeter-redis", "greeter-s3"}


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port or 6379


@pytest.mark.parametrize("name", APP_RENDERS)
def test_every_server_uses_one_redis_under_the_name_its_certificate_carries(name):
    """SpinApps read the Redis URL from Secret greeter-redis, greeter-host pods from their
    runtime config (password from the same Secret): every URL git holds names one endpoint.
    A managed Redis (production) is reached over TLS under its own name, which its
    certificate carries (no alias of ours in between); dev's runs in the cluster."""
    objects = render(name)
    read = set()
    for app in of_kind(objects, "SpinApp"):
        (store,) = app["spec"]["runtimeConfig"]["keyValueStores"]
        assert (store["name"], store["type"]) == ("default", "redis")
        (url,) = [o for o in store["options"] if o["name"] == "url"]
        read.add((url["valueFrom"]["secretKeyRef"]["name"], "url"))
    urls = {}
    for obj, spec in pod_specs(objects):
        if obj["metadata"]["name"] != "greeter-host":
            continue
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        read.add((env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"], "password"))
        config = tomllib.loads(one(objects, "ConfigMap", "greeter-host-runtime-config")["data"]["runtime-config.toml"])
        store = config["key_value_store"]["default"]
        assert (store["type"], store["password_env"]) == ("redis", "REDIS_PASSWORD")
        urls[ident(obj)] = store["url"]
    assert {secret for secret, _ in read} == {"greeter-redis"}
    for secret in of_kind(objects, "Secret"):
        if secret["metadata"]["name"] == "greeter-redis":
            urls[ident(secret)] = secret["stringData"]["url"]
            assert urlsplit(secret["stringData"]["url"]).password == secret["stringData"]["password"]
    for external in of_kind(objects, "ExternalSecret"):
        if external["spec"]["target"]["name"] == "greeter-redis":
            urls[ident(external)] = external["spec"]["target"]["template"]["data"]["url"]
    assert len([holder for holder in urls if holder.endswith("Secret/greeter-redis")]) == 1
    endpoints = {host_port(url) for url in urls.values()}
    assert len(endpoints) == 1, urls
    ((host, port),) = endpoints
    assert port == 6379
    services = names(objects, "Service")
    if name in PRODUCTION:
        assert {urlsplit(url).scheme for url in urls.values()} == {"rediss"}
        assert host not in services and "." in host
        # prod is never applied alone: each region names its endpoint.
        assert name == "prod" or not host.endswith(".invalid")
        assert [ident(s) for s in of_kind(objects, "Service") if s["spec"].get("type") == "ExternalName"] == []
    else:
        assert host in services


@pytest.mark.parametrize("name", ("dev", "greeter-host-only"))
def test_greeter_host_is_locked_down_and_drains_before_it_is_killed(name):
    deployment = one(render(name), "Deployment", "greeter-host")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    flag = lambda name: args[args.index(name) + 1]
    drain, delay = int(flag("--drain-timeout")), int(flag("--shutdown-delay"))
    assert pod["terminationGracePeriodSeconds"] > delay + drain
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[flag("--state-dir")]], "the state dir must be writable"
    config_dir, config_file = flag("--runtime-config-file").rsplit("/", 1)
    assert config_file in one(render(name), "ConfigMap", volumes[mounts[config_dir]]["configMap"]["name"])["data"]
    ports = {p["containerPort"] for p in container["ports"]}
    assert {int(flag("--listen").rsplit(":")[1]), int(flag("--metrics-listen").rsplit(":")[1])} == ports
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    # No CPU limit: unbounded, the serving threads (each with its own instances) would follow
    # the node's CPU count, while the memory limit stays fixed.
    assert "cpu" not in container["resources"]["limits"] and 1 <= int(flag("--threads")) <= 4


@pytest.mark.parametrize("name", ("dev", "greeter-host-only"))
def test_dev_schedules_on_nodes_without_a_zone_label(name):
    """kind, minikube and bare-metal nodes carry no zone label; a hard zone spread would leave
    dev's pods Pending there. Every node has a hostname label."""
    hard = [(ident(obj), c["topologyKey"]) for obj, pod in pod_specs(render(name))
            for c in pod.get("topologySpreadConstraints", [])
            if c["whenUnsatisfiable"] == "DoNotSchedule"]  # fmt: skip
    assert [h for h in hard if h[1] != "kubernetes.io/hostname"] == []


def autoscalers(objects, target):
    return [
        s for s in of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == target
    ]


@pytest.mark.parametrize("name", APP_RENDERS)
def test_an_autoscaled_spinapp_has_exactly_one_autoscaler(name):
    objects = render(name)
    for app in of_kind(objects, "SpinApp"):
        scalers = autoscalers(objects, app["metadata"]["name"])
        if app["spec"].get("enableAutoscaling"):
            assert "replicas" not in app["spec"] and len(scalers) == 1
        else:
            assert scalers == []


@pytest.mark.parametrize("name", APP_RENDERS)
def test_greeter_host_is_autoscaled_and_its_drains_never_wait_for_the_store(name):
    """Its HPA owns the replica count (a fixed one would be reset on every apply), and no PDB
    keeps unready pods (readiness follows the key-value store) from being evicted."""
    objects = render(name)
    if "greeter-host" in names(objects, "Deployment"):
        host = one(objects, "Deployment", "greeter-host")
        assert "replicas" not in host["spec"]
        assert len(autoscalers(objects, "greeter-host")) == 1
    for budget in of_kind(objects, "PodDisruptionBudget"):
        assert budget["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow", ident(budget)


@pytest.mark.parametrize("name", PRODUCTION)
def test_production_is_highly_available(name):
    objects = render(name)
    app = one(objects, "SpinApp", "greeter")
    assert app["spec"]["enableAutoscaling"]
    (hpa,) = autoscalers(objects, "greeter")
    assert hpa["spec"]["minReplicas"] >= 2
    assert one(objects, "PodDisruptionBudget", "greeter")["spec"]["maxUnavailable"] == 1


def test_dev_runs_one_replica_without_autoscaling():
    app = one(render("dev"), "SpinApp", "greeter")
    assert app["spec"]["replicas"] == 1 and not app["spec"].get("enableAutoscaling")


@pytest.mark.parametrize("name", APP_RENDERS)
def test_memory_request_equals_limit_and_cpu_is_not_capped(name):
    objects = render(name)
    resources = [(ident(a), a["spec"]["resources"]) for a in of_kind(objects, "SpinApp")]
    resources += [(ident(obj), c["resources"]) for obj, spec in pod_specs(objects) for c in spec["containers"]]
    for owner, res in resources:
        assert res["requests"]["memory"] == res["limits"]["memory"], owner
        assert "cpu" in res["requests"] and "cpu" not in res["limits"], owner


@pytest.mark.parametrize("name", APP_RENDERS)
def test_namespace_is_locked_down(name):
    objects = render(name)
    assert {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"} == {"greeter"}
    deny = one(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    assert all(sa.get("automountServiceAccountToken") is False for sa in of_kind(objects, "ServiceAccount"))
    sources = {source for np in of_kind(objects, "NetworkPolicy") for source in ingress_sources(np)}
    proxies = gateway_values(KUSTOMIZATIONS[name])["proxiesNamespace"]
    assert sources <= {f"namespace {proxies}", *ALLOWED_INGRESS_SOURCES}


# Where traffic may come from besides the gateway's proxies: Prometheus, and pods of the
# namespace itself (the servers reaching Redis).
ALLOWED_INGRESS_SOURCES = {"namespace monitoring", "this namespace"}


def test_each_cluster_names_its_gateway_in_one_place(tmp_path):
    """The Gateway and its proxies' namespace differ from cluster to cluster: set in an
    overlay's gateway.yaml, they reach every object that names them, and nothing names a
    gateway otherwise. Shown on a copy whose gateway.yaml files all say something else."""
    copies = {KUBE: tmp_path / "kube", REPO / "tests" / "kube" / "variants": tmp_path / "tests" / "kube" / "variants"}
    for source, copy in copies.items():
        shutil.copytree(source, copy)
    sentinel = {"name": "sentinel-gateway", "namespace": "sentinel-gateway-ns", "proxiesNamespace": "sentinel-proxies"}
    originals = set()
    for values in (tmp_path / "kube").rglob("gateway.yaml"):
        document = yaml.safe_load(values.read_text())
        originals |= set(document["data"].values())
        values.write_text(yaml.safe_dump({**document, "data": sentinel}))
    assert originals, "no overlay has a gateway.yaml"
    for name in APP_RENDERS:
        path = KUSTOMIZATIONS[name]
        for source, copy in copies.items():
            if path.is_relative_to(source):
                path = copy / path.relative_to(source)
        objects = render_path(path)
        for route in of_kind(objects, "HTTPRoute"):
            for parent in route["spec"]["parentRefs"]:
                assert (parent["name"], parent["namespace"]) == (sentinel["name"], sentinel["namespace"]), name
        for grant in of_kind(objects, "ReferenceGrant"):
            assert {peer["namespace"] for peer in grant["spec"]["from"]} == {sentinel["namespace"]}, name
        proxies = set(ingress_sources(one(objects, "NetworkPolicy", "allow-from-gateway")))
        assert proxies == {f"namespace {sentinel['proxiesNamespace']}"}, name
        leftovers = {value for value in flatten(list(objects)).values() if value in originals | {"from-gateway-yaml"}}
        assert not leftovers, f"{name} still names {leftovers}"


@pytest.mark.parametrize("name", (*PRODUCTION, "alternatives"))
def test_with_tls_the_app_answers_on_https_only_and_http_redirects(name):
    """Where a Certificate is issued, the app's routes bind the Gateway's `https` listener
    alone, and every one of their names is redirected to HTTPS on the `http` listener."""
    routes = of_kind(render(name), "HTTPRoute")
    served = [route for route in routes if any("backendRefs" in rule for rule in route["spec"]["rules"])]
    redirects = [route for route in routes if route not in served]
    assert served and redirects
    for route in served:
        assert {parent.get("sectionName") for parent in route["spec"]["parentRefs"]} == {"https"}, ident(route)
    for route in redirects:
        assert {parent.get("sectionName") for parent in route["spec"]["parentRefs"]} == {"http"}, ident(route)
        for rule in route["spec"]["rules"]:
            assert rule["filters"] == [{"type": "RequestRedirect",
                                        "requestRedirect": {"scheme": "https", "statusCode": 301}}]  # fmt: skip
    redirected = {host for route in redirects for host in route["spec"]["hostnames"]}
    assert {host for route in served for host in route["spec"]["hostnames"]} <= redirected


def test_certificates_are_issued_through_dns01():
    """HTTP-01 cannot issue them: the global name is geo-routed, so the challenge reaches
    whichever region is nearest, and the namespace's default-deny keeps the gateway from
    cert-manager's solver pods. Every solver of the issuer is DNS-01."""
    for issuer in of_kind(render("cluster"), "ClusterIssuer"):
        for solver in issuer["spec"]["acme"]["solvers"]:
            assert solver.keys() - {"selector"} == {"dns01"}, ident(issuer)


def ingress_sources(policy: dict):
    """What each ingress rule of a NetworkPolicy lets in, as a phrase: `namespace <name>`,
    `this namespace`, or anything broader (`anywhere`, an `ipBlock`, a namespace selector
    that is not one namespace's name)."""
    for rule in policy["spec"].get("ingress", []):
        peers = rule.get("from")
        if not peers:
            yield "anywhere"
        for peer in peers or []:
            if "ipBlock" in peer:
                yield f"ipBlock {peer['ipBlock']['cidr']}"
            elif "namespaceSelector" in peer:
                selector = peer["namespaceSelector"]
                name = selector.get("matchLabels", {}).get("kubernetes.io/metadata.name")
                yield f"namespace {name}" if name and selector.keys() == {"matchLabels"} else f"namespaces {selector}"
            else:
                yield "this namespace"


@pytest.mark.parametrize(
    ("rule", "source"),
    [
        ({"ports": [{"port": 80}]}, "anywhere"),
        ({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, "ipBlock 0.0.0.0/0"),
        ({"from": [{"namespaceSelector": {}}]}, "namespaces {}"),
        ({"from": [{"podSelector": {}}]}, "this namespace"),
        ({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}]},
         "namespace gateway-system"),
    ],
)
def test_ingress_sources_names_what_a_rule_lets_in(rule, source):
    assert list(ingress_sources({"spec": {"ingress": [rule]}})) == [source]


def hostnames(objects):
    return {h for r in of_kind(objects, "HTTPRoute") for h in r["spec"]["hostnames"]} | {
        rule["host"] for i in of_kind(objects, "Ingress") for rule in i["spec"]["rules"]
    }


@pytest.mark.parametrize("name", (*PRODUCTION, "alternatives"))
def test_the_certificate_covers_every_hostname_and_its_issuer_exists(name):
    objects = render(name)
    cert = one(objects, "Certificate", "greeter-tls")
    assert set(cert["spec"]["dnsNames"]) == hostnames(objects)
    assert cert["spec"]["issuerRef"]["name"] in names(render("cluster"), "ClusterIssuer")
    for ingress in of_kind(objects, "Ingress"):
        assert {t["secretName"] for t in ingress["spec"]["tls"]} == {cert["spec"]["secretName"]}


def flatten(node, path=()):
    """{path: leaf} of a nested object."""
    if isinstance(node, dict):
        return {p: v for k, child in node.items() for p, v in flatten(child, (*path, k)).items()}
    if isinstance(node, list):
        return {p: v for i, child in enumerate(node) for p, v in flatten(child, (*path, i)).items()}
    return {path: node}


# What may differ between a region and prod, by object: nothing else does.
REGIONAL = {
    "ConfigMap/greeter-config": {("data", "s3_endpoint"), ("data", "s3_region"), ("data", "s3_bucket")},
    "ExternalSecret/greeter-redis": {("spec", "target", "template", "data", "url")},
    "NetworkPolicy/allow-redis": {("spec", "egress", 0, "to", 0, "ipBlock", "cidr")},
    "HTTPRoute/greeter": {("spec", "hostnames", 1)},
    "HTTPRoute/greeter-redirect-to-https": {("spec", "hostnames", 1)},
    "Certificate/greeter-tls": {("spec", "dnsNames", 1)},
}


@pytest.mark.parametrize("region", REGIONS)
def test_a_region_differs_from_prod_only_where_regions_differ(region):
    prod = {ident(obj): flatten(obj) for obj in render("prod")}
    ours = {ident(obj): flatten(obj) for obj in render(region)}
    assert ours.keys() == prod.keys()
    changed = {
        obj: {path for path in ours[obj].keys() | prod[obj].keys() if ours[obj].get(path) != prod[obj].get(path)}
        for obj in ours
    }
    assert {obj: paths - REGIONAL.get(obj, set()) for obj, paths in changed.items()} == dict.fromkeys(ours, set())


def test_regions_have_their_own_values():
    values = {
        region: {
            (obj, path): flatten(one(render(region), *obj.split("/")))[path]
            for obj, paths in REGIONAL.items()
            for path in paths
        }
        for region in REGIONS
    }
    for key in values[REGIONS[0]]:
        assert len({values[region][key] for region in REGIONS}) == len(REGIONS), key
    placeholders = re.compile(r"\.invalid$|^192\.0\.2\.")
    assert [v for region in REGIONS for v in values[region].values() if placeholders.search(str(v))] == []


def test_argocd_generates_one_application_per_region_overlay():
    appset = one(render("argocd"), "ApplicationSet", "greeter")
    (generator,) = appset["spec"]["generators"]
    (expression,) = generator["clusters"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(REGIONS)
    label = expression["key"]
    path = appset["spec"]["template"]["spec"]["source"]["path"]
    for region in REGIONS:
        assert (KUBE.parent / path.replace(f'{{{{ index .metadata.labels "{label}" }}}}', region)).is_dir()
    project = one(render("argocd"), "AppProject", appset["spec"]["template"]["spec"]["project"])
    assert appset["spec"]["template"]["spec"]["source"]["repoURL"] in project["spec"]["sourceRepos"]
