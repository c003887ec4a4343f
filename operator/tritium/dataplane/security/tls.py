"""TLS on the gateway's API port: the server context, and the certificate reloaded when its files change.

The certificate and key are a kubernetes.io/tls Secret mounted into the gateway container
(render/deployment.py); their paths and the lowest TLS version come from the environment the
renderer writes (TRITIUM_TLS_*). A spec with ``security.tls`` whose files are missing refuses to
start: serving plain HTTP where the spec asks for TLS would be a silent downgrade.

Rotation. kubelet updates a mounted Secret by swapping a ``..data`` symlink, so the files change
in place, whole, without a restart (cert-manager renewing a certificate does exactly this). The
files are read once per POLL_SECONDS and compared with the last bytes loaded; on a change a new
SSLContext is built from them, and only once it loaded cleanly (a certificate and key that do not
match, say the swap was caught half way, leave the old one serving) does it replace the old one.
The swap happens per handshake: the listening context's SNI callback, which OpenSSL calls on every
ClientHello whether or not it names a server, moves the new connection onto the newest context.
Connections already established keep the certificate they were made with.

The canary hop. During a rollout the stable gateways forward the canary's share to the canary
revision's Service over HTTPS (dataplane/canary/forward.py). Both revisions mount the same Secret,
so the canary presents the certificate this gateway serves: the forwarder pins it by its SHA-256
fingerprint (``fingerprint``), which needs neither the cluster's issuer in a trust store nor the
per-revision Service names in the certificate. While a renewal reaches the pods at different
moments the two may differ for a poll or so; the forwarder then serves the share here.

Only the API port is TLS: the metrics port stays plain HTTP, because Prometheus scrapes it from
inside the cluster (render/podmonitor.py leaves its endpoints on the default scheme, http) and it
serves no request data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from tritium.api.spec import TlsSpec
from tritium.dataplane import mounted
from tritium.dataplane.mounted import MountedFile

log = logging.getLogger("tritium.tls")

CERT_FILE_ENV = "TRITIUM_TLS_CERT_FILE"
KEY_FILE_ENV = "TRITIUM_TLS_KEY_FILE"
MIN_VERSION_ENV = "TRITIUM_TLS_MIN_VERSION"
VERSIONS: dict[str, ssl.TLSVersion] = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
POLL_SECONDS = mounted.POLL_SECONDS


@dataclass(frozen=True)
class TlsSettings:
    """Where the certificate and key are, and the lowest TLS version accepted ("1.2" or "1.3")."""

    cert_file: str
    key_file: str
    min_version: str = "1.2"

    def __post_init__(self) -> None:
        if self.min_version not in VERSIONS:
            raise ValueError(f"TLS minimum version must be one of {', '.join(VERSIONS)}, not {self.min_version!r}")

    @classmethod
    def from_env(cls, spec: TlsSpec | None) -> TlsSettings | None:
        """The settings for a spec's ``security.tls`` from the pod's environment; None when the spec has none.

        The version comes from TRITIUM_TLS_MIN_VERSION, as the renderer writes it, else from the spec.
        """
        if spec is None:
            return None
        cert, key = os.environ.get(CERT_FILE_ENV), os.environ.get(KEY_FILE_ENV)
        if not cert or not key:
            raise ValueError(f"spec.security.tls is set but {CERT_FILE_ENV} and {KEY_FILE_ENV} are not")
        return cls(cert, key, os.environ.get(MIN_VERSION_ENV) or spec.min_version)


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server context with the certificate loaded (ssl.SSLError or OSError when it cannot be).

    Python's default server ciphers (forward-secret AEAD suites only) are kept; ALPN offers
    http/1.1 only, so an HTTP/2 client knows at once to speak HTTP/1.1.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = VERSIONS[settings.min_version]
    ctx.load_cert_chain(settings.cert_file, settings.key_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def leaf_fingerprint(cert_pem: bytes) -> bytes:
    """SHA-256 of the DER form of the first certificate in a PEM file (the leaf; a chain follows it)."""
    text = cert_pem.decode("ascii", errors="replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.index(begin)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[start:text.index(end, start) + len(end)])).digest()


class CertificateReloader(MountedFile[tuple[bytes, bytes]]):
    """The context the API port listens with, and the newest certificate, swapped in per handshake.

    Constructing it loads the certificate, so a missing or broken one fails the gateway's start.
    Later, a pair that cannot be read or does not load leaves the previous certificate serving;
    the files are compared with the pair last loaded, and a pair that failed is tried again on
    the next poll (load_cert_chain reads the files itself, so a failure may be a swap caught
    half way rather than the bytes read).
    """

    _log = log
    retry_failed = True

    def __init__(self, settings: TlsSettings) -> None:
        super().__init__(settings.cert_file, "TLS certificate")
        self.settings = settings
        self._raw = self._read()
        self.current = server_context(settings)
        self.fingerprint = leaf_fingerprint(self._raw[0])  # what a canary serving the same Secret presents
        self.listening = self.current
        self.listening.sni_callback = self._pick
        self.reloads = 0

    def _read(self) -> tuple[bytes, bytes]:
        return Path(self.settings.cert_file).read_bytes(), Path(self.settings.key_file).read_bytes()

    def _pick(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
              context: ssl.SSLContext) -> None:
        """OpenSSL's ClientHello callback: put a new connection on the newest certificate's context."""
        current = self.current
        if connection.context is not current:
            connection.context = current

    def _unreadable(self, exc: OSError) -> str:
        return f"cannot read {exc.filename or 'the certificate'} ({exc.strerror or exc})"

    def _load(self, raw: tuple[bytes, bytes]) -> str | None:
        try:
            context = server_context(self.settings)
        except (ssl.SSLError, OSError) as exc:
            return f"the new certificate and key do not load ({exc})"
        self.current = context
        self.fingerprint = leaf_fingerprint(raw[0])
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.settings.cert_file)
        return None

    def _warn(self, problem: str) -> None:
        log.warning("TLS: %s; still serving the certificate loaded before", problem)
