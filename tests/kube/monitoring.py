"""What kube/components/monitoring asks of Prometheus: its PrometheusRule and Grafana dashboards
as the overlays render them, and the metric names their PromQL uses.

metric_names_used() maps every metric name a rule's expr or a dashboard's query uses to where
(for error messages). Names are as queries write them, but a histogram's series suffixes
(`_bucket`, `_count`, `_sum`) are dropped, giving the histogram's name; a counter keeps `_total`
(`greeter_http_requests_total`), the name Prometheus stores its samples under.

EXTERNAL_METRICS says who else exports the names greeter-host does not; host_metric_names() is
what is left, what a scrape of greeter-host's /metrics must show:

    samples = [line for line in scraped.splitlines() if line and not line.startswith("#")]
    exported = {base_name(re.match(r"[^{ ]+", line)[0]) for line in samples}
    missing = host_metric_names().keys() - exported

A labelled family shows no line before its first observation (greeter-host's registry writes
nothing for it, not even `# TYPE`): such a scrape must first make greeter-host use it, e.g. an
upload for greeter_http_client_request_duration_seconds.
"""

import functools
import json
import re

from kube.manifests import of_kind, one, render

# Renders the app on both runtimes (the SpinApp and greeter-host's Deployment); the rule and
# the dashboards are the same in every overlay (tests/kube/test_alerts.py checks).
RENDER = "dev"
RULE = "greeter"
# The label kube-prometheus-stack's Grafana sidecar loads dashboards from.
DASHBOARD_LABEL = ("grafana_dashboard", "1")

# Who exports the metrics that greeter-host does not, by name or by prefix (ending in `*`).
EXTERNAL_METRICS = {
    "kube_*": "kube-state-metrics: the state of Deployments, pods and containers",
    "container_*": "cAdvisor, in the kubelet: what each container uses",
    "spin_*": "Spin in the SpinApp's pods, over OTLP to the OpenTelemetry Collector, whose Prometheus exporter Prometheus scrapes",
    "up": "Prometheus itself, per scrape target",
    "greeter:*": "recorded by the PrometheusRule's own rules (level:metric:operations names)",
}


def external_reason(name: str) -> str | None:
    """Why `name` is not greeter-host's to export, or None when it is."""
    for pattern, reason in EXTERNAL_METRICS.items():
        if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return reason
    return None


# --- what is rendered ----------------------------------------------------------------------


def prometheus_rule(name: str = RENDER) -> dict:
    return one(render(name), "PrometheusRule", RULE)


def rules(name: str = RENDER) -> list[dict]:
    """Every rule of the PrometheusRule, recording and alerting, in order."""
    return [rule for group in prometheus_rule(name)["spec"]["groups"] for rule in group["rules"]]


def recorded_names(name: str = RENDER) -> set[str]:
    return {rule["record"] for rule in rules(name) if "record" in rule}


def dashboards(name: str = RENDER) -> dict[str, dict]:
    """Each dashboard the sidecar loads, by "ConfigMap/name key"."""
    label, value = DASHBOARD_LABEL
    return {
        f"ConfigMap/{cm['metadata']['name']} {key}": json.loads(text)
        for cm in of_kind(render(name), "ConfigMap")
        if cm["metadata"].get("labels", {}).get(label) == value
        for key, text in cm.get("data", {}).items()
    }


def all_panels(panels: list[dict]):
    """Panels, and the panels of collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


# `label_values(<series selector>, <label>)`: Grafana's variable query, not PromQL.
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.S)


def dashboard_queries(dashboard: dict):
    """(where, PromQL) of every panel target and query variable of a Grafana dashboard."""
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        if match:
            yield f"variable {variable['name']}", match["selector"]
        elif not query.startswith("label_values("):
            raise ValueError(f"variable {variable['name']}: cannot read {query!r}")


def queries(name: str = RENDER) -> list[tuple[str, str]]:
    """(where, PromQL) of every expr of the rule and every query of the dashboards."""
    found = [
        (f"PrometheusRule/{RULE} {'record ' + rule['record'] if 'record' in rule else 'alert ' + rule['alert']}", rule["expr"])
        for rule in rules(name)
    ]
    for dashboard, content in dashboards(name).items():
        found += [(f"{dashboard} {where}", expr) for where, expr in dashboard_queries(content)]
    return found


# --- PromQL --------------------------------------------------------------------------------

# Words of PromQL that stand where a metric name could, and the modifiers followed by a list
# of label names.
KEYWORDS = {"and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}  # fmt: skip
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}  # fmt: skip

TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<variable>\$\{[^}]*\}|\$\w+)
      | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
      | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<identifier>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^<>=@(){}\[\],:])
    """,
    re.X,
)
CLOSING = {"(": ")", "[": "]", "{": "}"}


def tokens(expr: str) -> list[tuple[str, str]]:
    """The tokens of a PromQL expression (Grafana's `$variables` as tokens of their own),
    without spaces and comments."""
    found, position = [], 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if not match:
            raise ValueError(f"cannot read PromQL at {expr[position:position + 20]!r} in {expr!r}")
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group()))
        position = match.end()
    return found


def closing(found: list[tuple[str, str]], start: int) -> int:
    """The index of the bracket that closes the one at `start`."""
    depth = 0
    for index in range(start, len(found)):
        text = found[index][1]
        if found[index][0] == "punct" and text in CLOSING:
            depth += 1
        elif found[index][0] == "punct" and text in CLOSING.values():
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced {found[start][1]!r}")


def unquote(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text[1:-1]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, as written (`x_bucket`): identifiers standing
    alone or before a `{...}` matcher list, and `{__name__="x"}`; not functions, aggregations,
    keywords, label names (in matchers and in `by (...)`-style lists), durations, strings or
    Grafana variables."""
    found = tokens(expr)
    names, index = set(), 0
    while index < len(found):
        kind, text = found[index]
        following = found[index + 1] if index + 1 < len(found) else ("", "")
        if kind == "punct" and text == "{":
            end = closing(found, index)
            matchers = found[index + 1:end]
            for position in range(len(matchers) - 2):
                (_, label), (_, op), (value_kind, value) = matchers[position:position + 3]
                if label == "__name__" and op == "=" and value_kind == "string":
                    names.add(unquote(value))
            index = end + 1
            continue
        if kind == "punct" and text == "[":
            index = closing(found, index) + 1
            continue
        if kind == "identifier":
            word = text.lower()
            if word in LABEL_LISTS and following == ("punct", "("):
                index = closing(found, index + 1) + 1
                continue
            is_call = following == ("punct", "(")
            is_aggregation = text in AGGREGATIONS and following[1] in ("by", "without")
            if word not in KEYWORDS and not is_call and not is_aggregation:
                names.add(text)
        index += 1
    return names


HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def base_name(name: str) -> str:
    """The metric a series name belongs to: a histogram's for its _bucket, _count, _sum."""
    return HISTOGRAM_SERIES.sub("", name)


def metric_names_used(name: str = RENDER) -> dict[str, list[str]]:
    """Every metric name (base name) used by the rule's exprs and the dashboards' queries,
    mapped to where it is used."""
    used: dict[str, list[str]] = {}
    for where, expr in queries(name):
        for metric in sorted(metric_names(expr)):
            used.setdefault(base_name(metric), []).append(where)
    return used


@functools.cache
def host_metric_names(name: str = RENDER) -> dict[str, list[str]]:
    """The names greeter-host must export: every name used that no one else exports and no
    rule records."""
    recorded = recorded_names(name)
    return {
        metric: where
        for metric, where in metric_names_used(name).items()
        if metric not in recorded and external_reason(metric) is None
    }
