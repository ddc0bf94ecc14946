"""The cluster's own network and mount namespaces: every part of the cluster runs inside them,
so its addresses, routes, iptables rules and mounts are the cluster's alone and vanish with it.

A sleeping holder process keeps them open; the parts join them with nsenter. Inside, a
bridge carries the node's address (the gateway of the pods' network), which is also where the
API server listens, so pods and the tests reach it at the same, non-loopback address.
"""

import os
import subprocess
import time

# The pods' network; the bridge holds its first address, the node's.
POD_NETWORK = "10.88.0.0/16"
NODE_IP = "10.88.0.1"
BRIDGE = "greeter0"
# Addresses Services are given (only translated inside the cluster's namespaces).
SERVICE_RANGE = "10.96.0.0/16"
START_TIMEOUT_S = 5.0


class Namespaces:
    def __init__(self):
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            start_new_session=True,
        )
        self.enter = Namespaces.entering(self.holder.pid)
        try:
            self._wait_for_unshare()
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "link", "add", BRIDGE, "type", "bridge")
            self.run("ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE)
            self.run("ip", "link", "set", BRIDGE, "up")
            # With no default route here, the node's own calls to Services (the API server's
            # to webhooks) need one for kube-proxy's rules to translate.
            self.run("ip", "route", "add", SERVICE_RANGE, "dev", BRIDGE)
            # Routed pod traffic, and Service addresses translated for pods on the same bridge.
            self.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def entering(holder: int) -> tuple[str, ...]:
        """The command prefix that runs a command in the namespaces `holder` holds."""
        return ("nsenter", "-t", str(holder), "--net", "--mount", "--")

    def _wait_for_unshare(self) -> None:
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + START_TIMEOUT_S
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == mine:
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("unshare could not make the cluster's namespaces (root needed)")
            time.sleep(0.01)

    def run(self, *argv: str) -> None:
        result = subprocess.run([*self.enter, *argv], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed in the cluster's namespaces:\n{result.stderr}")

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()
