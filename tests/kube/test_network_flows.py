"""Every flow the system needs passes the rendered NetworkPolicies, and flows it does not need
are stopped: a small evaluator of Kubernetes' NetworkPolicy semantics (a flow passes when the
source's egress and the destination's ingress both allow it; a pod no policy of a direction
selects is open in that direction) run over each render's policies.

Flows: the gateway's proxies to the servers (SpinApp pods on 80, greeter-host on 8080), the
servers to DNS, to Redis (dev: the in-cluster pods; prod: the managed subnet) and to S3
(HTTPS to public addresses), Prometheus to greeter-host's metrics, the SpinApp's pods to the
OpenTelemetry Collector their executor names. cert-manager needs none: its DNS-01 challenges
never reach the namespace.
"""

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from kube.manifests import (
    APP_RENDERS,
    KUSTOMIZATIONS,
    PRODUCTION,
    gateway_values,
    ident,
    of_kind,
    one,
    pod_labels,
    pod_specs,
    render,
    selects,
)

NAMESPACE = "greeter"
MONITORING = "monitoring"
PUBLIC_ADDRESS = "203.0.113.10"  # S3 stands for any public endpoint


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict = field(default_factory=dict, hash=False)
    name: str = "a pod"


@dataclass(frozen=True)
class Address:
    ip: str


def namespace_labels(namespace: str) -> dict:
    return {"kubernetes.io/metadata.name": namespace}


def peer_matches(peer: dict, endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        # Pod addresses come and go: no policy of ours names them by address.
        if not isinstance(endpoint, Address):
            return False
        ip = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if not isinstance(endpoint, Pod):
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], namespace_labels(endpoint.namespace))
    else:
        in_namespace = endpoint.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector", {}), endpoint.labels)


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for allowed in ports:
        if allowed.get("protocol", "TCP") != protocol:
            continue
        if "port" not in allowed:
            return True
        first = allowed["port"]
        if first <= port <= allowed.get("endPort", first):
            return True
    return False


def directions(policy: dict) -> set[str]:
    spec = policy["spec"]
    return set(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def side_allows(policies, pod, direction: str, other, port: int, protocol: str) -> bool:
    """Whether `pod`'s policies of `direction` let the flow with `other` through."""
    if not isinstance(pod, Pod):
        return True  # an address outside the cluster has no policies
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies
                 if p["metadata"].get("namespace", NAMESPACE) == pod.namespace
                 and direction in directions(p) and selects(p["spec"]["podSelector"], pod.labels)]  # fmt: skip
    if not selecting:
        return True
    return any(
        port_matches(rule.get("ports"), port, protocol)
        and (not rule.get(peers_key) or any(peer_matches(peer, other, pod.namespace) for peer in rule[peers_key]))
        for policy in selecting
        for rule in policy["spec"].get(rules_key, [])
    )


def passes(policies, source, destination, port: int, protocol: str = "TCP") -> bool:
    return side_allows(policies, source, "Egress", destination, port, protocol) and side_allows(
        policies, destination, "Ingress", source, port, protocol
    )


def servers(objects) -> list[tuple[Pod, int]]:
    """Each server pod with the port it serves HTTP on."""
    labels = pod_labels(objects)
    found = [(Pod(NAMESPACE, labels[ident(app)], ident(app)), 80) for app in of_kind(objects, "SpinApp")]
    for obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            for port in container.get("ports", []):
                if port.get("name") == "http":
                    found.append((Pod(NAMESPACE, labels[ident(obj)], ident(obj)), port["containerPort"]))
    return found


def workload_pod(objects, workload: str) -> Pod:
    """A pod of `workload` ("Kind/name")."""
    return Pod(NAMESPACE, pod_labels(objects)[workload], workload)


def managed_redis_subnet(objects) -> str:
    """The one address block the servers may reach a managed Redis in."""
    (block,) = [peer["ipBlock"]["cidr"] for peer in one(objects, "NetworkPolicy", "allow-redis")["spec"]["egress"][0]["to"]]
    return block


def redis_endpoint(objects):
    """Where the servers' Redis is: the in-cluster pods, or an address of the managed subnet."""
    if any(obj["metadata"]["name"] == "greeter-redis" for obj in of_kind(objects, "StatefulSet")):
        return workload_pod(objects, "StatefulSet/greeter-redis")
    return Address(str(next(ipaddress.ip_network(managed_redis_subnet(objects)).hosts())))


def otlp_endpoint(objects, app: dict) -> str | None:
    """Where a SpinApp's executor has its pods send their telemetry (OTLP), if anywhere."""
    executor = one(objects, "SpinAppExecutor", app["spec"]["executor"])
    return executor["spec"].get("deploymentConfig", {}).get("otel", {}).get("exporter_otlp_endpoint")


def collector(endpoint: str) -> tuple[Pod, int]:
    """The OpenTelemetry Collector's pod behind an endpoint URL naming its Service
    (`http://<service>.<namespace>.svc...:<port>`), as its Helm chart labels it."""
    url = urlsplit(endpoint)
    namespace = url.hostname.split(".")[1]
    return Pod(namespace, {"app.kubernetes.io/name": "opentelemetry-collector"}, "OpenTelemetry Collector"), url.port


def needed_flows(name: str, objects):
    """(what, source, destination, port, protocol) of every flow the system needs."""
    proxies = Pod(gateway_values(KUSTOMIZATIONS[name])["proxiesNamespace"], {"app": "gateway-proxy"}, "gateway proxy")
    dns = Pod("kube-system", {"k8s-app": "kube-dns"}, "CoreDNS")
    redis = redis_endpoint(objects)
    for server, port in servers(objects):
        yield "gateway to server", proxies, server, port, "TCP"
        yield "DNS over UDP", server, dns, 53, "UDP"
        yield "DNS over TCP", server, dns, 53, "TCP"
        yield "S3 over HTTPS", server, Address(PUBLIC_ADDRESS), 443, "TCP"
        yield "server to Redis", server, redis, 6379, "TCP"
    for obj, _ in pod_specs(objects):
        if obj["metadata"]["name"] == "greeter-host":
            scraper = Pod(MONITORING, {"app.kubernetes.io/name": "prometheus"}, "Prometheus")
            yield "metrics scrape", scraper, workload_pod(objects, ident(obj)), 9090, "TCP"
    for app in of_kind(objects, "SpinApp"):
        if endpoint := otlp_endpoint(objects, app):
            yield "telemetry to the collector", workload_pod(objects, ident(app)), *collector(endpoint), "TCP"
    for obj, spec in pod_specs(objects):
        env = {var["name"]: var.get("value") for c in spec["containers"] for var in c.get("env", [])}
        if endpoint := env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            yield "telemetry to the collector", workload_pod(objects, ident(obj)), *collector(endpoint), "TCP"


def unwanted_flows(name: str, objects):
    """Flows that must be stopped: strangers reaching the servers or Redis, the servers
    reaching private addresses or Redis ports outside the store."""
    stranger = Pod("default", {"app": "anything"}, "a pod of another namespace")
    neighbour = Pod(NAMESPACE, {"app": "not-a-server"}, "a pod of the namespace that is no server")
    for server, port in servers(objects):
        yield "another namespace to a server", stranger, server, port, "TCP"
        yield "a server to a private address", server, Address("10.99.0.1"), 443, "TCP"
        yield "a server to Redis on the internet", server, Address(PUBLIC_ADDRESS), 6379, "TCP"
        yield "a server to another pod of the monitoring namespace", server, Pod(MONITORING, {"app.kubernetes.io/name": "grafana"}, "Grafana"), 3000, "TCP"
    redis = redis_endpoint(objects)
    if isinstance(redis, Pod):
        yield "another namespace to Redis", stranger, redis, 6379, "TCP"
        yield "a non-server to Redis", neighbour, redis, 6379, "TCP"


def blocked(objects, flows) -> list[str]:
    policies = of_kind(objects, "NetworkPolicy")
    return [f"{what}: {source} -> {destination}:{port}/{protocol}"
            for what, source, destination, port, protocol in flows
            if not passes(policies, source, destination, port, protocol)]  # fmt: skip


@pytest.mark.parametrize("name", APP_RENDERS)
def test_every_flow_the_system_needs_passes(name):
    objects = render(name)
    flows = list(needed_flows(name, objects))
    assert {what for what, *_ in flows} >= {"gateway to server", "DNS over UDP", "server to Redis", "S3 over HTTPS"}
    # Spin in the shim and greeter-host's Deployment send telemetry to the collector
    # (components/monitoring).
    if any(app["spec"]["executor"] == "containerd-shim-spin" for app in of_kind(objects, "SpinApp")):
        assert "telemetry to the collector" in {what for what, *_ in flows}
    if any(obj["metadata"]["name"] == "greeter-host" for obj, _ in pod_specs(objects)):
        assert "telemetry to the collector" in {what for what, *_ in flows}
    assert blocked(objects, flows) == []


@pytest.mark.parametrize("name", APP_RENDERS)
def test_flows_the_system_does_not_need_are_stopped(name):
    objects = render(name)
    flows = list(unwanted_flows(name, objects))
    assert len(blocked(objects, flows)) == len(flows)


@pytest.mark.parametrize(
    ("policy", "flow"),
    [
        ("allow-dns", "DNS over UDP"),
        ("allow-from-gateway", "gateway to server"),
        ("allow-redis", "server to Redis"),
        ("allow-metrics-scrape", "metrics scrape"),
        ("allow-otlp", "telemetry to the collector"),
    ],
)
def test_a_missing_policy_blocks_its_flow(policy, flow):
    objects = [obj for obj in render("dev") if not (obj["kind"] == "NetworkPolicy" and obj["metadata"]["name"] == policy)]
    assert any(line.startswith(f"{flow}:") for line in blocked(objects, needed_flows("dev", objects)))


def test_production_reaches_redis_only_in_its_subnet():
    for name in PRODUCTION:
        assert ipaddress.ip_network(managed_redis_subnet(render(name))).is_private, name
