"""CURVE keys for streams that leave the host: ZeroMQ's CurveZMQ (RFC 26, elliptic-curve
Curve25519 key exchange; Bernstein 2006, "Curve25519: new Diffie-Hellman speed records"),
with clients checked against an allow-list of public keys by ``zmq.auth``.

Keys are the certificate files ``zmq.auth.create_certificates(directory, name)`` writes:
``NAME.key`` (public key only, safe to hand out) and ``NAME.key_secret`` (both keys; keep it
private). A relay loads its own ``.key_secret`` and a directory of its clients' ``.key``
files; a receiver loads its own ``.key_secret`` and the relay's ``.key``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["ClientKeys", "ServerKeys", "generate_keys", "start_authenticator"]

log = logging.getLogger(__name__)

#: ZAP domain of sunspec's CURVE servers
ZAP_DOMAIN = b"sunspec"


def _available() -> None:
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")


def _load_secret(path: str | Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key (give the .key_secret file)")
    return public, secret


def _load_public(path: str | Path) -> bytes:
    public, _ = zmq.auth.load_certificate(path)
    return public


@dataclass(frozen=True)
class ServerKeys:
    """A CURVE server's key pair and the directory of the client public keys it accepts."""

    public: bytes
    secret: bytes
    allowed: Path

    @classmethod
    def load(cls, secret_file: str | Path, allowed_dir: str | Path) -> ServerKeys:
        """Read ``secret_file`` (``NAME.key_secret``); ``allowed_dir`` holds clients' ``.key``
        files. Raises OSError or ValueError naming the file at fault."""
        _available()
        allowed = Path(allowed_dir)
        if not allowed.is_dir():
            raise ValueError(f"{allowed} is not a directory of client public keys")
        public, secret = _load_secret(secret_file)
        return cls(public, secret, allowed)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server (before it binds)."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)

    def allowed_keys(self) -> int:
        """How many client public keys the allow-list directory holds now."""
        return len(list(self.allowed.glob("*.key")))


@dataclass(frozen=True)
class ClientKeys:
    """A CURVE client's key pair and the public key of the server it connects to."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, secret_file: str | Path, server_public_file: str | Path) -> ClientKeys:
        """Read this client's ``NAME.key_secret`` and the server's ``.key``."""
        _available()
        public, secret = _load_secret(secret_file)
        return cls(public, secret, _load_public(server_public_file))

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the server (before it connects)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


def start_authenticator(ctx: zmq.Context, keys: ServerKeys) -> ThreadAuthenticator:
    """Start the ZAP handler of ``ctx`` accepting exactly the client keys in
    ``keys.allowed`` (read now; restart to take new keys). Stop it before terminating
    ``ctx``."""
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("sunspec.auth"))
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=str(keys.allowed))
    n = keys.allowed_keys()
    (log.info if n else log.warning)("CURVE: %d client keys allowed from %s", n, keys.allowed)
    return auth


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``NAME.key`` and ``NAME.key_secret`` into ``directory``
    (created if needed); returns their paths (public, secret)."""
    _available()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(d, name)
    return Path(public), Path(secret)
