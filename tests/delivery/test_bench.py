"""bench/run's like-for-like peer of greeter-host hello 0.3 sends `wasmtime serve` the request
headers greeter-host adds for Spin: the same names as host/src/server/routing.rs makes."""

import ast
import re

from kube.manifests import REPO


def bench_spin_headers() -> set[str]:
    tree = ast.parse((REPO / "bench" / "run").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "SPIN_HEADERS" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError("bench/run has no SPIN_HEADERS")


def host_spin_headers() -> set[str]:
    """The fixed headers of `spin_headers` (the per-capture `spin-path-match-*` ones aside:
    hello's route `/...` has no captures)."""
    source = (REPO / "host" / "src" / "server" / "routing.rs").read_text()
    body = re.search(r"pub fn spin_headers\(.*?\n}\n", source, re.DOTALL)
    assert body, "routing.rs has no spin_headers"
    return set(re.findall(r'"(spin-[a-z-]+)"\.to_string\(\)', body.group(0)))


def test_the_bench_sends_the_headers_greeter_host_adds():
    host = host_spin_headers()
    assert len(host) == 7, host
    assert bench_spin_headers() == host
