# The two commands of the README:
#   make serve   builds the component and greeter-host, serves the app on http://127.0.0.1:3000
#   make test    installs what is missing (.ci/setup), then runs every check and test
# The cluster tests against a cluster of your own (kube/README.md): make e2e
# The benchmark (not part of the tests; minutes once built, the host's release build first): bench/run
# Where .ci/setup builds the test tools; every script and test reads the same variable.
export GREETER_CACHE ?= $(HOME)/.cache/greeter
CACHE := $(GREETER_CACHE)
# Last, so the machine's own tools win; .ci/setup builds there what the machine lacks.
export PATH := $(PATH):$(CACHE)/bin
VENV := $(CACHE)/venv
WASM := --target wasm32-wasip2 --release
COMPONENTS := -p greeter -p greeter-p3 -p hello -p faulty -p hello-p3 -p faulty-p3

# The app's integration tests, run once more against its wasi:http@0.3 build.
APP_TESTS := --test app --test api_contract --test listing --test redis --test s3 --test traces

.PHONY: serve component host test lint python-tests e2e

serve: component host
	./target/host/greeter-host up --from spin.toml --listen 127.0.0.1:3000

component:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	cargo build $(WASM) -p greeter

# The host is built for speed with its own profile; `release` is tuned for the .wasm's size.
host:
	cargo build --profile host -p greeter-host

test:
	./.ci/setup
	cargo build $(WASM) $(COMPONENTS)
	$(MAKE) lint
	cargo test --workspace
	GREETER_TEST_APP_FROM=registry cargo test -p greeter-host --test app
	GREETER_TEST_APP_BUILD=p3 cargo test -p greeter-host $(APP_TESTS)
	bench/run --smoke
	$(MAKE) python-tests

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy $(WASM) $(COMPONENTS) -- -D warnings

# tests/cluster starts a cluster (namespaces, mounts, cgroups): root, or sudo on CI runners.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo --preserve-env env "PATH=$(PATH)")

python-tests:
	$(AS_ROOT) $(VENV)/bin/python -m pytest -q tests

# tests/cluster against the cluster GREETER_KUBECONFIG names (e2e.yml: kind), described by
# the variables of tests/cluster/cluster.py; the images it publishes hold these builds.
e2e:
	@test -n "$$GREETER_KUBECONFIG" || { echo "make e2e: set GREETER_KUBECONFIG (kube/README.md)" >&2; exit 1; }
	./.ci/setup e2e
	cargo build $(WASM) -p greeter -p greeter-p3
	cargo build -p greeter-host
	$(VENV)/bin/python -m pytest -q tests/cluster
