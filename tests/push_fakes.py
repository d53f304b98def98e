"""Fake push providers for tests, the bench and chaos, served for real over the network:

- APNs: HTTP/2 over TLS (granian, a throwaway CA from trustme), checking the ES256
  provider token against the public half of the .p8 key it handed out, the topic and the
  push type, as Apple does;
- FCM: HTTP v1 `messages:send` (checks the access token and its expiry), and what google-auth
  gets tokens from: the OAuth2 token endpoint (the RS256 JWT-bearer assertion of the service
  account it handed out; the STS token exchange of workload identity federation, for the
  subject token it handed out) and a GCE/GKE metadata server (`/computeMetadata/v1/...`);
- a webhook endpoint.

Tests steer the token side with `PushFakes.control(...)`: the tokens' lifetime, token
requests that fail (503), a slow token endpoint, revoking every token; `PushFakes.tokens()`
lists the tokens issued (by which grant, to whom) and how many sends used each.

Tokens steer the answers: a token starting `bad` is unregistered (APNs 410 Unregistered,
FCM 404 UNREGISTERED, webhook 410), `flaky` fails with 503 on its first request,
`throttle` gets 429 with Retry-After: 1 on its first, and `slow` (APNs, FCM) is accepted and
recorded at once but answered `SLOW_S` later (a sender killed meanwhile never learns it was
delivered). Every accepted message is recorded with what makes a resend replace it on the
device (APNs `apns-collapse-id`; FCM's collapse key, Android tag, APNs header and Web Push
Topic; the webhook's Idempotency-Key) and when (`at`, time.time()); `GET /_deliveries` on
either server lists them (other processes read them that way).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.devstack import free_port, port_open

CONFIG_ENV = "JIFEN_PUSH_FAKES_CONFIG"
ROOT = Path(__file__).resolve().parent.parent
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # what Google's endpoint wants
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"

Scope = dict[str, Any]
SLOW_S = 2.0  # how long a `slow` token's answer is held (below the suite's provider timeout)


@dataclass
class Recorded:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)  # token -> requests seen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, delivery: dict[str, Any]) -> None:
        with self.lock:
            self.deliveries.append(delivery)

    def seen(self, token: str) -> int:
        with self.lock:
            self.requests[token] += 1
            return self.requests[token]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(
    send: Any,
    status: int,
    body: dict[str, Any] | list[Any] | str | None,
    headers: dict[str, str] | None = None,
) -> None:
    raw = json.dumps(body).encode() if body is not None else b""
    head = [(b"content-type", b"application/json")]
    head += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode().lower(): v.decode() for k, v in scope["headers"]}


def _steer(recorded: Recorded, token: str) -> str | None:
    """What a token's request should get: None (accept), 'bad', 'flaky', 'throttle' or
    'slow' (accept, answer late)."""
    count = recorded.seen(token)
    if token.startswith("bad"):
        return "bad"
    if token.startswith("slow"):
        return "slow"
    if token.startswith("flaky") and count == 1:
        return "flaky"
    if token.startswith("throttle") and count == 1:
        return "throttle"
    return None


class FakeState:
    """The servers' side, built in each server process from the config file PushFakes wrote.
    A provider token or access token is verified once and then remembered, as the real
    services do (an APNs token lives up to an hour)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.team_id, self.key_id, self.topic = config["team_id"], config["key_id"], config["topic"]
        self.project, self.fcm_port = config["project"], config["fcm_port"]
        key = serialization.load_pem_private_key(Path(config["apns_key"]).read_bytes(), None)
        self._apns_public = key.public_key()
        account = json.loads(Path(config["service_account"]).read_text())
        self.account_email = account["client_email"]
        private = serialization.load_pem_private_key(account["private_key"].encode(), None)
        self._account_public = private.public_key()
        self.subject_token = config.get("subject_token") or uuid.uuid4().hex
        self._access_tokens: dict[str, float] = {}  # token -> when it expires (time.time())
        self._issued: list[dict[str, Any]] = []
        self._uses: Counter[str] = Counter()
        self.token_lifetime_s = 3599.0
        self.fail_token_requests = 0
        self.token_delay_s = 0.0
        self._provider_tokens: set[str] = set()
        self.apns = Recorded()
        self.fcm = Recorded()
        self.webhook = Recorded()

    async def apns_app(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/_deliveries":
            with self.apns.lock:
                await _answer(send, 200, list(self.apns.deliveries))
            return
        body = await _body(receive)
        headers = _headers(scope)
        if scope.get("http_version") != "2":
            await _answer(send, 505, {"reason": "HTTP/2 required"})
            return
        if scope["method"] != "POST" or not path.startswith("/3/device/"):
            await _answer(send, 404, {"reason": "BadPath"})
            return
        scheme, _, signed = headers.get("authorization", "").partition(" ")
        if signed not in self._provider_tokens:
            try:
                assert scheme.lower() == "bearer"
                header = jwt.get_unverified_header(signed)
                assert header.get("kid") == self.key_id and header.get("alg") == "ES256"
                claims = jwt.decode(signed, self._apns_public, algorithms=["ES256"])  # type: ignore[arg-type]
                assert claims["iss"] == self.team_id and abs(time.time() - claims["iat"]) < 3600
            except (AssertionError, jwt.PyJWTError, KeyError):
                await _answer(send, 403, {"reason": "InvalidProviderToken"})
                return
            self._provider_tokens.add(signed)
        if headers.get("apns-topic") != self.topic:
            await _answer(send, 400, {"reason": "TopicDisallowed"})
            return
        if headers.get("apns-push-type") != "alert":
            await _answer(send, 400, {"reason": "InvalidPushType"})
            return
        token = path.removeprefix("/3/device/")
        steer = _steer(self.apns, token)
        if steer == "bad":
            await _answer(
                send, 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}
            )
            return
        if steer == "flaky":
            await _answer(send, 503, {"reason": "ServiceUnavailable"})
            return
        if steer == "throttle":
            await _answer(send, 429, {"reason": "TooManyRequests"}, {"retry-after": "1"})
            return
        payload = json.loads(body)
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        self.apns.add(
            {
                "token": token,
                "apns_id": apns_id,
                "collapse_id": headers.get("apns-collapse-id"),
                "priority": headers.get("apns-priority"),
                "title": payload["aps"]["alert"]["title"],
                "body": payload["aps"]["alert"]["body"],
                "notification_id": payload.get("notification_id"),
                "at": time.time(),
            }
        )
        if steer == "slow":
            await asyncio.sleep(SLOW_S)
        await _answer(send, 200, None, {"apns-id": apns_id, "apns-unique-id": str(uuid.uuid4())})

    async def fcm_app(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        body = await _body(receive)
        headers = _headers(scope)
        if path == "/_deliveries":
            with self.fcm.lock:
                fcm = list(self.fcm.deliveries)
            with self.webhook.lock:
                hooks = list(self.webhook.deliveries)
            await _answer(send, 200, {"fcm": fcm, "webhook": hooks})
            return
        if path in ("/token", "/sts"):
            await self._oauth(body, send)
            return
        if path == "/" or path.startswith("/computeMetadata/"):
            await self._metadata(scope, headers, send)
            return
        if path == "/_control":
            self._control(json.loads(body))
            await _answer(send, 200, {})
            return
        if path == "/_tokens":
            issued = [
                {"grant": t["grant"], "subject": t["subject"], "uses": self._uses[t["token"]]}
                for t in self._issued
            ]
            await _answer(send, 200, issued)
            return
        if path == "/webhook":
            message = json.loads(body)
            steer = _steer(self.webhook, message["token"])
            if steer == "bad":
                await _answer(send, 410, {"error": "gone"})
            elif steer in ("flaky", "throttle"):
                await _answer(send, 503, {"error": "unavailable"})
            else:
                self.webhook.add(
                    {
                        **message,
                        "idempotency_key": headers.get("idempotency-key"),
                        "at": time.time(),
                    }
                )
                await _answer(send, 200, {"id": f"hook-{uuid.uuid4().hex[:12]}"})
            return
        if path != f"/v1/projects/{self.project}/messages:send" or scope["method"] != "POST":
            await _answer(send, 404, {"error": {"code": 404, "status": "NOT_FOUND"}})
            return
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self._access_tokens.get(bearer, 0.0) < time.time():  # unknown, revoked or expired
            await _answer(send, 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
            return
        self._uses[bearer] += 1
        message = json.loads(body)["message"]
        token = message["token"]
        steer = _steer(self.fcm, token)
        if steer == "bad":
            await _answer(
                send,
                404,
                {
                    "error": {
                        "code": 404,
                        "status": "NOT_FOUND",
                        "message": "Requested entity was not found.",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                },
            )
            return
        if steer in ("flaky", "throttle"):
            code = 503 if steer == "flaky" else 429
            status = "UNAVAILABLE" if steer == "flaky" else "RESOURCE_EXHAUSTED"
            await _answer(
                send, code, {"error": {"code": code, "status": status}}, {"retry-after": "1"}
            )
            return
        name = f"projects/{self.project}/messages/{uuid.uuid4().int % 10**16}"
        android = message.get("android", {})

        def headers_of(part: str) -> dict[str, str]:
            return dict(message.get(part, {}).get("headers", {}))

        self.fcm.add(
            {
                "token": token,
                "name": name,
                "title": message["notification"]["title"],
                "body": message["notification"]["body"],
                "notification_id": message["data"].get("notification_id"),
                "collapse_key": android.get("collapse_key"),
                "tag": android.get("notification", {}).get("tag"),
                "apns_collapse_id": headers_of("apns").get("apns-collapse-id"),
                "topic": headers_of("webpush").get("Topic"),
                "at": time.time(),
            }
        )
        if steer == "slow":
            await asyncio.sleep(SLOW_S)
        await _answer(send, 200, {"name": name})

    def _control(self, settings: dict[str, Any]) -> None:
        self.token_lifetime_s = float(settings.get("token_lifetime_s", self.token_lifetime_s))
        self.fail_token_requests = int(settings.get("fail_token_requests", 0))
        self.token_delay_s = float(settings.get("token_delay_s", 0.0))
        if settings.get("revoke"):
            self._access_tokens.clear()

    async def _issue(self, send: Any, grant: str, subject: str, extra: dict[str, str]) -> None:
        """An access token, after the steered delay or failure."""
        await asyncio.sleep(self.token_delay_s)
        if self.fail_token_requests > 0:
            self.fail_token_requests -= 1
            await _answer(send, 503, {"error": "temporarily_unavailable"})
            return
        token = f"ya29.{uuid.uuid4().hex}"
        lifetime = self.token_lifetime_s
        self._access_tokens[token] = time.time() + lifetime
        self._issued.append({"token": token, "grant": grant, "subject": subject})
        await _answer(
            send,
            200,
            {"access_token": token, "expires_in": lifetime, "token_type": "Bearer", **extra},
        )

    async def _oauth(self, body: bytes, send: Any) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        grant = form.get("grant_type")
        try:
            if grant == JWT_BEARER:  # a service account's key (google-auth signs the assertion)
                header = jwt.get_unverified_header(form["assertion"])
                claims = jwt.decode(
                    form["assertion"],
                    self._account_public,  # type: ignore[arg-type]
                    algorithms=["RS256"],
                    audience=GOOGLE_TOKEN_AUDIENCE,
                )
                assert header.get("kid") == "k1" and claims["iss"] == self.account_email
                assert claims["scope"] == FCM_SCOPE
                await self._issue(send, "jwt-bearer", claims["iss"], {})
            elif grant == TOKEN_EXCHANGE:  # workload identity federation: an STS exchange
                assert form["subject_token"] == self.subject_token
                assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
                assert form["audience"].startswith("//iam.googleapis.com/")
                assert FCM_SCOPE in form["scope"].split()
                issued = "urn:ietf:params:oauth:token-type:access_token"
                extra = {"issued_token_type": issued}
                await self._issue(send, "token-exchange", form["audience"], extra)
            else:
                raise AssertionError(grant)
        except (AssertionError, KeyError, jwt.PyJWTError):
            await _answer(send, 400, {"error": "invalid_grant"})

    async def _metadata(self, scope: Scope, headers: dict[str, str], send: Any) -> None:
        """The metadata server a GCE VM or a GKE pod with workload identity asks: its default
        service account's tokens, the project id."""
        if headers.get("metadata-flavor") != "Google":
            await _answer(send, 403, {"error": "Missing Metadata-Flavor: Google header"})
            return
        flavor = {"metadata-flavor": "Google"}
        path = scope["path"].removeprefix("/computeMetadata/v1/")
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        account = "instance/service-accounts/default/"
        if path == "/":  # google-auth's ping: "am I on Google Cloud?"
            await _answer(send, 200, None, flavor)
        elif path == "project/project-id":
            await _answer(send, 200, self.project, flavor)
        elif path == account and query.get("recursive") == "true":
            info = {"email": self.account_email, "scopes": [FCM_SCOPE], "aliases": ["default"]}
            await _answer(send, 200, info, flavor)
        elif path == f"{account}token" and FCM_SCOPE in query.get("scopes", "").split(","):
            await self._issue(send, "metadata", self.account_email, {})
        else:
            await _answer(send, 404, {"error": "not found"}, flavor)


_STATE: FakeState | None = None


def _state() -> FakeState:
    global _STATE
    if _STATE is None:
        _STATE = FakeState(json.loads(Path(os.environ[CONFIG_ENV]).read_text()))
    return _STATE


async def apns_app(scope: Scope, receive: Any, send: Any) -> None:
    """The fake APNs (served over HTTP/2 with TLS by granian)."""
    await _state().apns_app(scope, receive, send)


async def fcm_app(scope: Scope, receive: Any, send: Any) -> None:
    """The fake FCM (OAuth token endpoint, messages:send) and webhook."""
    await _state().fcm_app(scope, receive, send)


class PushFakes:
    """Writes the keys, certificates and service account, and runs the two fake servers in
    granian processes of their own (a Rust HTTP/1.1 and HTTP/2 server: the fakes must not be
    what limits a benchmark)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.apns_port = free_port()
        self.fcm_port = free_port()
        self.team_id, self.key_id, self.topic = "TEAM123456", "KEY1234567", "com.jifen.test"
        self.project = "jifen-test"
        self.subject_token = f"ksa.{uuid.uuid4().hex}"  # what workload identity federation presents
        apns_key = ec.generate_private_key(ec.SECP256R1())
        self.apns_key_path = directory / "AuthKey.p8"
        self.apns_key_path.write_bytes(
            apns_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.account_email = "jifen-test@jifen-test.iam.gserviceaccount.com"
        self.service_account_path = directory / "service-account.json"
        self.service_account_path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.project,
                    "private_key_id": "k1",
                    "private_key": account_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                    "client_email": self.account_email,
                    "token_uri": f"http://127.0.0.1:{self.fcm_port}/token",
                }
            )
        )
        ca = trustme.CA()
        self.ca_path = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        cert.private_key_pem.write_to_path(str(self.key_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        self.config_path = directory / "fakes.json"
        self.config_path.write_text(
            json.dumps(
                {
                    "team_id": self.team_id,
                    "key_id": self.key_id,
                    "topic": self.topic,
                    "project": self.project,
                    "fcm_port": self.fcm_port,
                    "apns_key": str(self.apns_key_path),
                    "service_account": str(self.service_account_path),
                    "subject_token": self.subject_token,
                }
            )
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        """What the notifier is configured with to use these fakes."""
        return {
            "JIFEN_IOS_PROVIDER": "apns",
            "JIFEN_ANDROID_PROVIDER": "fcm",
            "JIFEN_WEB_PROVIDER": "webhook",
            "JIFEN_APNS_URL": f"https://127.0.0.1:{self.apns_port}",
            "JIFEN_APNS_TOPIC": self.topic,
            "JIFEN_APNS_TEAM_ID": self.team_id,
            "JIFEN_APNS_KEY_ID": self.key_id,
            "JIFEN_APNS_KEY_PATH": str(self.apns_key_path),
            "JIFEN_APNS_CA_FILE": str(self.ca_path),
            "JIFEN_FCM_URL": f"http://127.0.0.1:{self.fcm_port}",
            "JIFEN_FCM_PROJECT_ID": self.project,
            "JIFEN_FCM_SERVICE_ACCOUNT_PATH": str(self.service_account_path),
            "JIFEN_WEBHOOK_URL": f"http://127.0.0.1:{self.fcm_port}/webhook",
        }

    def start(self) -> PushFakes:
        env = {**os.environ, CONFIG_ENV: str(self.config_path), "PYTHONPATH": str(ROOT)}
        common = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
        common += ["--workers", "1", "--log-level", "warning", "--no-ws"]
        apns = [*common, "--http", "2", "--port", str(self.apns_port)]
        apns += ["--ssl-certificate", str(self.cert_path), "--ssl-keyfile", str(self.key_path)]
        apns += ["--http2-max-concurrent-streams", "1000", "tests.push_fakes:apns_app"]
        fcm = [*common, "--http", "1", "--port", str(self.fcm_port), "tests.push_fakes:fcm_app"]
        log = (self.directory / "fakes.log").open("ab")
        for command in (apns, fcm):
            self.processes.append(
                subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
            )
        deadline = time.monotonic() + 30
        while not (
            port_open("127.0.0.1", self.apns_port) and port_open("127.0.0.1", self.fcm_port)
        ):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(
                    f"the push fakes did not start: see {self.directory / 'fakes.log'}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []

    # -- the token side --------------------------------------------------------------------

    def control(
        self,
        token_lifetime_s: float = 3599.0,
        fail_token_requests: int = 0,
        token_delay_s: float = 0.0,
        revoke: bool = False,
    ) -> None:
        """Steer the FCM fake's token side (every call resets what it does not set)."""
        settings = {
            "token_lifetime_s": token_lifetime_s,
            "fail_token_requests": fail_token_requests,
            "token_delay_s": token_delay_s,
            "revoke": revoke,
        }
        httpx.post(f"{self.fcm_url}/_control", json=settings, timeout=30).raise_for_status()

    def tokens(self) -> list[dict[str, Any]]:
        """Every access token issued: grant (jwt-bearer, token-exchange, metadata), subject,
        and how many sends it authorised."""
        return list(httpx.get(f"{self.fcm_url}/_tokens", timeout=30).json())

    @property
    def fcm_url(self) -> str:
        return f"http://127.0.0.1:{self.fcm_port}"

    # -- what was delivered ----------------------------------------------------------------

    def deliveries(self) -> dict[str, list[dict[str, Any]]]:
        """Every accepted message, by provider (apns, fcm, webhook)."""
        with httpx.Client(timeout=30, verify=str(self.ca_path), http2=True) as client:
            apns = client.get(f"https://127.0.0.1:{self.apns_port}/_deliveries").json()
            other = client.get(f"http://127.0.0.1:{self.fcm_port}/_deliveries").json()
        return {"apns": apns, "fcm": other["fcm"], "webhook": other["webhook"]}

    def delivered(self, notification_id: str | None = None) -> list[dict[str, Any]]:
        """Every accepted message (all providers), or those of one notification."""
        return [
            {"provider": kind, **d}
            for kind, items in self.deliveries().items()
            for d in items
            if notification_id is None or d.get("notification_id") == notification_id
        ]
