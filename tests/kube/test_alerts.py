"""The alerts and recording rules of kube/components/monitoring work as they say: promtool
(Debian's `prometheus` package) checks the rendered PrometheusRule's spec as a rules file and
runs the unit tests in tests/kube/alerts/, which must make every alert fire and, on healthy
series, stay quiet, and must evaluate every recorded series. The names the rules select by
(namespace, Deployments, scrape job) are those the overlays render."""

import copy
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kube.manifests import APP_RENDERS, KUBE, PRODUCTION, of_kind, one, render
from kube.monitoring import RENDER, base_name, metric_names, prometheus_rule, recorded_names, rules

ALERT_TESTS = Path(__file__).with_name("alerts")
RULES_FILE = "greeter.rules.yaml"  # what the tests' rule_files name
RUNBOOKS = "https://github.com/greeter-dev/greeter/blob/main/kube/README.md#"
SEVERITIES = {"page", "ticket"}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (.ci/setup does)"
    return found


def write_rules(directory: Path, spec: dict) -> Path:
    """The rule's spec as a Prometheus rules file, with a copy of every test file beside it."""
    for test in ALERT_TESTS.glob("*.yaml"):
        shutil.copy(test, directory / test.name)
    path = directory / RULES_FILE
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_tests(directory: Path, names: list[str]) -> list[subprocess.CompletedProcess]:
    """`promtool test rules` on each test file, at once (each runs for seconds)."""
    def command(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([promtool(), "test", "rules", name], cwd=directory, capture_output=True, text=True, check=False)

    with ThreadPoolExecutor() as pool:
        return list(pool.map(command, names))


def unit_test_files() -> list[str]:
    names = sorted(path.name for path in ALERT_TESTS.glob("*.yaml"))
    assert names, f"no promtool tests in {ALERT_TESTS}"
    return names


def test_the_rules_pass_promtool_check_and_their_unit_tests(tmp_path):
    rules_file = write_rules(tmp_path, prometheus_rule()["spec"])
    checked = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    failed = [f"{result.args[-1]}:\n{result.stdout}{result.stderr}"
              for result in run_tests(tmp_path, unit_test_files()) if result.returncode != 0]  # fmt: skip
    assert failed == [], "\n".join(failed)


# Rules broken on purpose: each must make the unit tests fail (so they test what they say).
def _without_for(spec, alert):
    for rule in (r for group in spec["groups"] for r in group["rules"]):
        if rule.get("alert") == alert:
            rule.pop("for")


def _replace(spec, alert, old, new):
    for rule in (r for group in spec["groups"] for r in group["rules"]):
        if rule.get("alert") == alert:
            assert old in rule["expr"], (alert, old)
            rule["expr"] = rule["expr"].replace(old, new)


BROKEN_RULES = [
    ("GreeterDown pages at once", lambda spec: _without_for(spec, "GreeterDown")),
    ("GreeterNotReady counts a scaled-to-zero Deployment", lambda spec: _replace(spec, "GreeterNotReady", "> 0", ">= 0")),
    ("GreeterCrashLooping counts one restart", lambda spec: _replace(spec, "GreeterCrashLooping", "> 2", "> 0")),
    ("GreeterRedisUnreachable counts SQLite", lambda spec: _replace(spec, "GreeterRedisUnreachable", 'backend="redis"', 'backend=~".+"')),
    ("GreeterMetricsAbsent misses unscraped pods", lambda spec: _replace(spec, "GreeterMetricsAbsent", "unless", "and")),
]


@pytest.mark.parametrize("break_rules", [b[1] for b in BROKEN_RULES], ids=[b[0] for b in BROKEN_RULES])
def test_a_broken_rule_fails_its_tests(tmp_path, break_rules):
    spec = copy.deepcopy(prometheus_rule()["spec"])
    break_rules(spec)
    write_rules(tmp_path, spec)
    (result,) = run_tests(tmp_path, ["workloads.yaml"])
    assert result.returncode != 0


def unit_test_groups() -> list[dict]:
    """Every test group of every promtool test file."""
    return [group for name in unit_test_files() for group in yaml.safe_load((ALERT_TESTS / name).read_text())["tests"]]


def series_names(group: dict) -> set[str]:
    """The base names of a test group's input series."""
    return {base_name(re.match(r"\s*([a-zA-Z_:][\w:]*)", series["series"])[1]) for series in group.get("input_series", [])}


def sources(expr: str, depth: int = 0) -> set[str]:
    """The base names of the scraped series an expr reads, through the recorded ones."""
    assert depth < 10, "recording rules that record each other"
    found = set()
    for name in metric_names(expr):
        recording = [rule["expr"] for rule in rules() if rule.get("record") == name]
        found |= set().union(*(sources(e, depth + 1) for e in recording)) if recording else {base_name(name)}
    return found


def alerting_rules() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: f"{r['alert']}-{'-'.join(r.get('labels', {}).values())}")
def test_each_alert_is_tested_firing_and_quiet(rule):
    """Some test expects the alert with its labels, and one that reads every series the alert
    reads (healthy ones, not none) expects it quiet."""
    fired, quiet = False, False
    for group in unit_test_groups():
        for case in group.get("alert_rule_test", []):
            if case["alertname"] != rule["alert"]:
                continue
            expected = case.get("exp_alerts") or []
            fired |= any(rule.get("labels", {}).items() <= alert.get("exp_labels", {}).items() for alert in expected)
            quiet |= not expected and sources(rule["expr"]) <= series_names(group)
    assert fired, f"no test makes {rule['alert']} {rule.get('labels')} fire"
    assert quiet, f"no test of {rule['alert']} on healthy series of {sorted(sources(rule['expr']))} expects it quiet"


def test_every_recorded_series_is_tested():
    tested = {name for group in unit_test_groups() for case in group.get("promql_expr_test", [])
              if case.get("exp_samples") for name in metric_names(case["expr"])}  # fmt: skip
    assert recorded_names() - tested == set()


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (outside code blocks)."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        in_code ^= line.startswith("```")
        heading = re.match(r"#{1,6} (.*)", line)
        if heading and not in_code:
            anchors.add(re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alert_has_a_severity_a_summary_and_a_runbook_in_kube_readme():
    anchors = github_anchors((KUBE / "README.md").read_text())
    for rule in alerting_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule["alert"]
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOKS) and url.removeprefix(RUNBOOKS) in anchors, (rule["alert"], url)
        assert url.removeprefix(RUNBOOKS) == rule["alert"].lower(), "one runbook section per alert, named after it"


def test_every_app_render_carries_the_same_rule():
    spec = prometheus_rule(RENDER)["spec"]
    for name in APP_RENDERS:
        assert prometheus_rule(name)["spec"] == spec, name
    assert set(PRODUCTION) <= set(APP_RENDERS)


def selector_values(label: str) -> set[str]:
    """Every value the rule's exprs match `label` with (`=` or `=~`, alternatives split)."""
    values = set()
    for rule in rules():
        for op, value in re.findall(rf'\b{label}\s*(=~|=)\s*"([^"]*)"', rule["expr"]):
            values |= set(value.split("|")) if op == "=~" else {value}
    return values


def test_the_rules_select_the_rendered_namespace_deployments_and_scrape_job():
    """kube-state-metrics names the Deployments: the SpinApp's (spin-operator names it after
    the SpinApp) and greeter-host's. Prometheus names greeter-host's scrape job after the
    Service its ServiceMonitor selects (no jobLabel)."""
    objects = [*render(RENDER), *render("prod")]
    assert selector_values("namespace") == {obj["metadata"]["namespace"] for obj in objects if obj["kind"] != "Namespace"}
    apps = {obj["metadata"]["name"] for obj in of_kind(objects, "SpinApp")}
    servers = {obj["metadata"]["name"] for obj in of_kind(objects, "Deployment")}
    assert selector_values("deployment") == apps | servers
    monitor = one(render(RENDER), "ServiceMonitor", "greeter-host")
    assert "jobLabel" not in monitor["spec"]
    (service,) = [s for s in of_kind(render(RENDER), "Service")
                  if all(s["metadata"].get("labels", {}).get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())]  # fmt: skip
    assert selector_values("job") == {service["metadata"]["name"]}
