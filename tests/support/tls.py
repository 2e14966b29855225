"""A self-signed certificate for TLS tests, made with the `openssl` command.

The certificate names 127.0.0.1 and localhost, so a client that verifies it
(with the certificate itself as the trust anchor) accepts the test server.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    @property
    def ca(self) -> Path:
        """Self-signed: the certificate is its own CA."""
        return self.cert

    def client_context(self, verify: bool = True) -> ssl.SSLContext:
        """A client context trusting only this certificate (or nothing checked)."""
        if not verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def make_self_signed(directory: Path, name: str = "regswitch-test", days: int = 7) -> TlsFiles:
    """Write `<name>.crt` and `<name>.key` (EC P-256) into `directory`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl not found (Debian package openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    cmd = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        str(days),
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl failed ({proc.returncode}): {proc.stderr[-2000:]}")
    key.chmod(0o600)
    return TlsFiles(cert, key)
