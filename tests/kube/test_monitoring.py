"""The Grafana dashboard of kube/components/monitoring reaches Grafana and asks Prometheus valid
questions, and every metric it and the rules ask about has an exporter: greeter-host (a running
one, scraped) or one EXTERNAL_METRICS names. tests/kube/monitoring.py reads
the metric names out of the PromQL; the parser is tested here on every query."""

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from kube.manifests import APP_RENDERS, KUBE, REPO, one, render
from kube.test_semantics import answer
from kube.monitoring import (
    DASHBOARD_LABEL,
    EXTERNAL_METRICS,
    all_panels,
    base_name,
    dashboard_queries,
    dashboards,
    external_reason,
    host_metric_names,
    metric_names,
    metric_names_used,
    queries,
    recorded_names,
    tokens,
)

DASHBOARDS = KUBE / "components" / "monitoring" / "dashboards"
CONFIGMAP = "greeter-dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# kubectl apply (client-side, as kube/deploy applies) keeps the whole object in an annotation,
# and annotations hold 256 KiB at most.
ANNOTATION_LIMIT = 256 * 1024


def test_every_app_render_ships_the_dashboards_to_grafanas_sidecar():
    files = {path.name: json.loads(path.read_text()) for path in DASHBOARDS.glob("*.json")}
    assert files
    label, value = DASHBOARD_LABEL
    for name in APP_RENDERS:
        configmap = one(render(name), "ConfigMap", CONFIGMAP)
        assert configmap["metadata"]["labels"][label] == value, name
        assert {key: json.loads(text) for key, text in configmap["data"].items()} == files, name
        assert len(json.dumps(configmap)) < ANNOTATION_LIMIT // 2, "the dashboards outgrow kubectl apply's annotation"


def panels(dashboard: dict) -> list[dict]:
    return [panel for panel in all_panels(dashboard["panels"]) if panel["type"] != "row"]


@pytest.mark.parametrize("key", dashboards())
def test_the_dashboard_asks_the_chosen_data_source_for_the_chosen_namespace(key):
    dashboard = dashboards()[key]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert (variables["namespace"]["type"], variables["namespace"]["datasource"]) == ("query", DATASOURCE)
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE and panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            # Everything but Spin's series (labelled with the collector's namespace) is per namespace.
            if any(not name.startswith("spin_") for name in metric_names(target["expr"])):
                assert 'namespace="$namespace"' in target["expr"], (panel["title"], target["expr"])


@pytest.mark.parametrize("key", dashboards())
def test_no_two_panels_overlap(key):
    taken = {}
    for panel in all_panels(dashboards()[key]["panels"]):
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[(x, y)] = panel["title"]


# What Grafana puts in place of its variables before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "30s", "$__range": "6h", "${datasource}": "prometheus",
                     "$namespace": "greeter"}  # fmt: skip


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool checks each query (Grafana's variables filled in) as a recording rule's expr."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (.ci/setup does)"
    found = [(f"{key} {where}", expr) for key, dashboard in dashboards().items() for where, expr in dashboard_queries(dashboard)]
    assert found
    rules = []
    for where, expr in found:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a variable the test does not know in {expr!r}"
        rules.append({"record": "dashboard:query", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('rate(x_total{a="b"}[5m])', {"x_total"}),
        ('sum by (le, route) (rate(h_bucket{a="{b}", c=~"d|e"}[$__rate_interval]))', {"h_bucket"}),
        ("sum(x) without (a) > bool 3", {"x"}),
        ("count(up) by (job)", {"up"}),
        ("a / on (slo) group_left () b", {"a", "b"}),
        ("a / ignoring (pod) group_right (c, d) b", {"a", "b"}),
        ("rec:name:rate5m offset 1h30m and other @ 1609746000", {"rec:name:rate5m", "other"}),
        ('{__name__="by_name", job="j"}', {"by_name"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("vector(0.001) * 1e6 + Inf - NaN", set()),
        ("max_over_time(m[1h:5m]) unless topk(3, n)", {"m", "n"}),
        ("a # a comment naming b\n or c", {"a", "c"}),
    ],
)
def test_the_metric_name_parser(expr, names):
    assert metric_names(expr) == names


def test_the_parser_refuses_what_it_cannot_read():
    with pytest.raises(ValueError):
        metric_names("rate(x[5m]) ; y")


def test_the_parser_reads_every_query():
    """On every query of the rule and the dashboards: names the expr writes, every `name{`
    among them, no PromQL word, and a name wherever the expr is not a constant."""
    for where, expr in queries():
        names = metric_names(expr)
        assert all(re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", expr) for n in names), where
        assert set(re.findall(r"([a-zA-Z_:][\w:]*)\{", expr)) <= names, where
        words = {text for kind, text in tokens(expr) if kind == "identifier"}
        assert not names & {"by", "without", "on", "ignoring", "sum", "rate", "max", "and", "or", "unless", "le"}, where
        assert names or words <= {"vector"}, where


def test_base_names():
    assert [base_name(n) for n in ("h_bucket", "h_count", "h_sum", "c_total", "g")] == ["h", "h", "h", "c_total", "g"]


def test_external_metrics_name_their_exporter():
    assert all(reason.strip() for reason in EXTERNAL_METRICS.values())
    assert external_reason("kube_pod_status_ready") and external_reason("up") and external_reason("greeter:x:rate5m")
    assert external_reason("upstream") is None and external_reason("greeter_http_requests_total") is None


@pytest.fixture(scope="module")
def scraped_host_metrics(tmp_path_factory) -> set[str]:
    """The metric names a running greeter-host (the debug build `make test` makes) exports,
    read from its /metrics after requests through every path that feeds one: a page, a write
    and a read of the key-value store, and an upload whose outbound request is refused (a port
    nothing listens on), so that every labelled family has a sample."""
    host = REPO / "target" / "debug" / "greeter-host"
    assert host.exists(), f"{host} is missing: make test builds it"
    app, metrics, refused = free_port(), free_port(), free_port()
    argv = [str(host), "up", "--from", str(REPO / "spin.toml"), "--listen", f"127.0.0.1:{app}",
            "--metrics-listen", f"127.0.0.1:{metrics}", "--state-dir", str(tmp_path_factory.mktemp("state"))]  # fmt: skip
    s3 = {"ENDPOINT": f"http://127.0.0.1:{refused}", "REGION": "us-east-1", "BUCKET": "b",
          "PATH_STYLE": "true", "ACCESS_KEY_ID": "k", "SECRET_ACCESS_KEY": "s"}  # fmt: skip
    env = dict(os.environ, **{f"SPIN_VARIABLE_S3_{name}": value for name, value in s3.items()})
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{app}"
        assert answer(f"{base}/", server) == 200
        assert call("POST", f"{base}/api/greetings", b'{"name":"Ada"}') == 201
        assert call("GET", f"{base}/api/greetings?limit=5") == 200
        assert call("POST", f"{base}/api/upload-random") == 502
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            scraped = response.read().decode()
    finally:
        server.kill()
        server.wait()
    samples = [line for line in scraped.splitlines() if line and not line.startswith("#")]
    return {base_name(re.match(r"[^{ ]+", line)[0]) for line in samples}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(method: str, url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_metric_used_is_greeter_hosts_or_named_with_its_exporter(scraped_host_metrics):
    used = host_metric_names()
    assert used, "the rule and the dashboards use no greeter-host metric"
    unknown = {name: where for name, where in used.items() if name not in scraped_host_metrics}
    assert unknown == {}, "used, but not exported by a running greeter-host"
    recorded = {name for name in metric_names_used() if name.startswith("greeter:")}
    assert recorded <= recorded_names(), "the dashboard plots a series no rule records"


def test_every_metric_greeter_host_exports_is_on_the_dashboard(scraped_host_metrics):
    on_dashboards = {base_name(n) for d in dashboards().values() for _, expr in dashboard_queries(d) for n in metric_names(expr)}
    assert scraped_host_metrics - on_dashboards == set()
