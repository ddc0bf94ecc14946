"""A rotated Secret takes effect without anyone restarting anything: a new Redis password in
Secret greeter-redis (as External Secrets writes one in prod) makes Stakater Reloader roll
Redis, the greeter-host Deployment and the SpinApp's Deployment (whose runtime config
spin-operator then renders anew from the Secret). Afterwards Redis takes only the new
password, and both runtimes serve the greetings stored before the rotation with it.
"""

import base64
import json
import secrets
import time

from cluster.test_spinkube import APP_URL
from cluster.test_workloads import HOST_URL, READY_TIMEOUT, request

NAMESPACE = "greeter"
SECRET = "greeter-redis"
REDIS_POD = "greeter-redis-0"
# Reloader's roll, then, for the SpinApp, the operator's second one with the new runtime config.
ROTATION_TIMEOUT_S = 180.0
# What redis-cli prints for a PING after its AUTH was refused.
REFUSED = "NOAUTH Authentication required."


def redis_answer(cluster, password: str) -> str:
    """What Redis answers a PING authenticated with `password` (or why it could not)."""
    result = cluster.kubectl("-n", NAMESPACE, "exec", REDIS_POD, "--", "redis-cli", "--no-auth-warning",
                             "-a", password, "ping", check=False)  # fmt: skip
    return result.stdout.strip() or result.stderr.strip()


def greeting_answer(client, url: str, greeting_id: str) -> tuple[int, object] | str:
    """(status, JSON body) of a GET of the greeting, or why there was no answer (a rollout
    may leave a Service without endpoints for a moment)."""
    try:
        status, body = request(client, "GET", f"{url}/api/greetings/{greeting_id}")
    except AssertionError as error:
        return str(error)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def rotate(cluster, client, greeting: dict, old: str, new: str) -> None:
    """Writes password `new` where `old` was, waits until Redis takes only `new` and both
    runtimes serve `greeting` with it, then until every workload that reads the Secret has
    finished rolling."""
    rotated = {"stringData": {"password": new, "url": f"redis://:{new}@greeter-redis:6379"}}
    cluster.kubectl("-n", NAMESPACE, "patch", "secret", SECRET, "--type=merge", "-p", json.dumps(rotated))
    deadline = time.monotonic() + ROTATION_TIMEOUT_S
    while True:
        answers = {
            "redis, new password": redis_answer(cluster, new),
            "redis, old password": redis_answer(cluster, old),
            "greeter-host": greeting_answer(client, HOST_URL, greeting["id"]),
            "SpinApp": greeting_answer(client, APP_URL, greeting["id"]),
        }
        if answers == {"redis, new password": "PONG", "redis, old password": REFUSED,
                       "greeter-host": (200, greeting), "SpinApp": (200, greeting)}:  # fmt: skip
            break
        assert time.monotonic() < deadline, f"the rotation did not take effect: {answers}"
        time.sleep(2)
    for workload in ("statefulset/greeter-redis", "deployment/greeter-host", "deployment/greeter"):
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", workload, f"--timeout={READY_TIMEOUT}")


def test_a_rotated_redis_password_reaches_redis_and_both_runtimes(dev, cluster, reloader):
    created, body = request(dev.client, "POST", f"{HOST_URL}/api/greetings", {"name": "Before rotation"})
    assert created == 201, body
    greeting = json.loads(body)
    stored = cluster.kubectl("-n", NAMESPACE, "get", "secret", SECRET, "-o", "jsonpath={.data.password}").stdout
    applied = base64.b64decode(stored).decode()
    rotated = secrets.token_hex(16)
    try:
        rotate(cluster, dev.client, greeting, applied, rotated)
    finally:
        # Back to the overlay's password: the tests after this one apply and diff the overlay.
        rotate(cluster, dev.client, greeting, rotated, applied)
