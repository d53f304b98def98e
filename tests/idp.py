"""A fake identity provider for the JWT tests: signing keys (RSA, EC P-256, Ed25519), tokens
signed with them, and a JWKS served over real HTTP on 127.0.0.1.

The server runs in a thread, so it answers while a test blocks (waiting for a service
process to become ready) as well as while it awaits. `mode` makes it fail the way a provider
does: `ok`, `error` (503), `refuse` (the port closed: connection refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://idp.example.test/realms/jifen"
AUDIENCE = "jifen-api"
Mode = Literal["ok", "error", "refuse"]


@dataclass
class Key:
    kid: str
    algorithm: str  # RS256, ES256 or EdDSA
    private: Any = field(repr=False)

    @classmethod
    def new(cls, kid: str, algorithm: str = "RS256") -> Key:
        private: Any
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(algorithm)
        return cls(kid, algorithm, private)

    def jwk(self) -> dict[str, Any]:
        """The public half as the provider publishes it (no `alg`: derived from the key)."""
        public = self.private.public_key()
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, user: str = "u-1", ttl: int = 600, **claims: Any) -> str:
        """A token as the provider issues it; `claims` override (None removes one)."""
        now = int(time.time())
        body = {"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, self.algorithm, headers={"kid": self.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token put together by hand (PyJWT will not sign `alg: none` or HS256 with a PEM)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 over header and claims with `secret` as the HMAC key, e.g. a public key's PEM
    (the HS/RS confusion attack: the verifier that takes the header's word uses it so)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


class FakeIdp:
    """Serves `{"keys": [...]}` of the published keys at `url`; counts the fetches."""

    def __init__(self, *keys: Key) -> None:
        self.published: list[Key] = list(keys)
        self.mode: Mode = "ok"
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.fetches += 1
                if idp.mode == "error":
                    self.send_error(503)
                    return
                body = json.dumps({"keys": [key.jwk() for key in idp.published]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def publish(self, *keys: Key) -> None:
        self.published = list(keys)

    def start(self) -> FakeIdp:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-idp", daemon=True
        ).start()
        self.mode = "ok"
        return self

    def set_mode(self, mode: Mode) -> None:
        """`refuse` closes the port (connections refused); `ok`/`error` reopen it if needed,
        on the same port."""
        if mode == "refuse" and self._server is not None:
            self.stop()
        elif mode != "refuse" and self._server is None:
            self.start()
        self.mode = mode

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
