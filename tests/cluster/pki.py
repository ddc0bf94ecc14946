"""The test cluster's certificates, made with the openssl command: one CA signs every
serving and client certificate, and a separate key signs ServiceAccount tokens.

Keys are ECDSA P-256 (fast to make, accepted by every Kubernetes component); certificates
live for two days, longer than any test run.
"""

import subprocess
from pathlib import Path

DAYS = "2"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


class Pki:
    """Certificates under `directory`: `ca.crt`/`ca.key` (made unless there), and one
    `<name>.crt`/`<name>.key` pair per certificate made."""

    def __init__(self, directory: Path, ca_name: str = "greeter-test-ca"):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        if self.ca.exists():  # a cluster started earlier (tests/cluster/up)
            return
        # The CA's only extensions: basicConstraints CA:TRUE and the key identifiers.
        openssl("req", "-x509", *CURVE, "-keyout", str(self.ca_key), "-out", str(self.ca),
                "-subj", f"/CN={ca_name}", "-days", DAYS)  # fmt: skip

    def issue(self, name: str, subject: str, usage: str, hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A certificate signed by the CA: `usage` is serverAuth or clientAuth; `hosts` become
        its subject alternative names (IP addresses or DNS names)."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        extensions = ["-addext", f"extendedKeyUsage={usage}", "-addext", "basicConstraints=CA:FALSE"]
        if hosts:
            names = ",".join(f"{'IP' if host[0].isdigit() else 'DNS'}:{host}" for host in hosts)
            extensions += ["-addext", f"subjectAltName={names}"]
        openssl("req", "-x509", "-CA", str(self.ca), "-CAkey", str(self.ca_key), *CURVE,
                "-keyout", str(key), "-out", str(cert), "-subj", subject, "-days", DAYS,
                *extensions)  # fmt: skip
        return cert, key

    def signing_key(self, name: str) -> tuple[Path, Path]:
        """A bare key pair (public, private), for ServiceAccount tokens."""
        private, public = self.directory / f"{name}.key", self.directory / f"{name}.pub"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", str(private))  # fmt: skip
        openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
        return public, private
