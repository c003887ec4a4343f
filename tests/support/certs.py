"""The certificates a loopback Kubernetes control plane needs, made with the openssl command line.

Three trust roots, as a kubeadm cluster has: the cluster CA (API server serving certificate and
client certificates), the front-proxy CA (the aggregation layer's request-header authentication,
without which kube-controller-manager logs errors in a loop) and the service-account key pair.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "3650"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str, subject: str) -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", f"{name}.key", "-subj", subject, "-days", DAYS, "-out", f"{name}.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )


def _signed(directory: Path, name: str, ca: str, subject: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=directory)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=directory)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", DAYS, "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=directory,
    )


@dataclass(frozen=True)
class ClusterCerts:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def make_certs(directory: Path) -> ClusterCerts:
    """Create (once) every key and certificate of the control plane under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "admin.crt").exists():
        return ClusterCerts(directory)
    client = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    )
    _ca(directory, "ca", "/CN=tritium-test-ca")
    _signed(
        directory, "apiserver", "ca", "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n",
    )
    _signed(directory, "admin", "ca", "/O=system:masters/CN=tritium-admin", client)
    _ca(directory, "front-proxy-ca", "/CN=tritium-front-proxy-ca")
    _signed(directory, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", client)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
    return ClusterCerts(directory)


_SERVING = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")


def serving_ca(directory: Path, name: str = "serving-ca") -> Path:
    """A CA for the gateway's serving certificates (what cert-manager's issuer would be); its .crt path."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, name, f"/CN=tritium-test-{name}")
    return directory / f"{name}.crt"


def serving_cert(directory: Path, name: str, ca: str = "serving-ca") -> tuple[Path, Path]:
    """A loopback serving certificate (IP:127.0.0.1, DNS:localhost) signed by ``ca``: (tls.crt, tls.key).

    Each one gets the CA's next serial number, so two of them are told apart by it.
    """
    _signed(directory, name, ca, "/CN=tritium-gateway", _SERVING)
    return directory / f"{name}.crt", directory / f"{name}.key"


def serial_of(cert: Path) -> int:
    """The certificate's serial number, as ssl.getpeercert()'s "serialNumber" (hex) reads."""
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(cert)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().split("=", 1)[1], 16)
