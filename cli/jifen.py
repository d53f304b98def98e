"""`jifen`: the operator's command line, a thin client of the services' own HTTP APIs (and of
Kafka, for dead letters). Every write takes an idempotency key; `--json` prints what the API
answered, for scripts.

    jifen event send alice like_post --attr post_id=p1
    jifen balance alice
    jifen history alice --limit 20
    jifen adjust alice --points 100 --reason "客服补偿" --idempotency-key ticket-4711
    jifen reconcile
    jifen dlq list upstream.events
    jifen dlq replay upstream.events --idempotency-key replay-2026-11-30
    jifen rebuild leaderboard weekly
    jifen init                     # the secrets of a first production run (cli/init.py)

Where the services are: JIFEN_CLI_BASE_URL (default http://127.0.0.1, the ports are the
contract's 8001..8007) or one URL per service (JIFEN_CLI_LEDGER_URL, ...); credentials:
JIFEN_ADMIN_TOKEN and JIFEN_INGEST_KEY; the broker: JIFEN_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cli.init import init
from services.suite import SERVICES
from shared.events import dlq_topic
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY

app = typer.Typer(help="Operate a Jifen suite through its APIs.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, replay them through the normal path.")
rebuild_app = typer.Typer(help="Rebuild a read model from its source of truth.")
event_app = typer.Typer(help="Behavior events.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(rebuild_app, name="rebuild")
app.add_typer(event_app, name="event")
app.command("init")(init)

JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's answer as JSON")]
Key = Annotated[
    str,
    typer.Option(
        "--idempotency-key",
        "-k",
        help="required: the same key again does the same write once",
        show_default=False,
    ),
]


def url(service: str) -> str:
    own = os.environ.get(f"JIFEN_CLI_{service.upper()}_URL")
    if own:
        return own.rstrip("/")
    base = os.environ.get("JIFEN_CLI_BASE_URL", "http://127.0.0.1").rstrip("/")
    port = int(os.environ.get("JIFEN_CLI_BASE_PORT", "8000")) + SERVICES[service]
    return f"{base}:{port}"


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ.get('JIFEN_ADMIN_TOKEN', DEV_ADMIN_TOKEN)}"}


def call(method: str, service: str, path: str, **kwargs: Any) -> Any:
    """One request; a 4xx/5xx is printed as the API's error and exits 1."""
    headers = kwargs.pop("headers", None) or admin()
    try:
        response = httpx.request(
            method, f"{url(service)}{path}", headers=headers, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        typer.echo(f"error: {service} unreachable at {url(service)}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body.get('error')}: {body.get('message')}"
        except ValueError:
            message = response.text[:300]
        typer.echo(f"error: {response.status_code} {message}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else {}


def show(data: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for line in lines:
            typer.echo(line)


# -- events -------------------------------------------------------------------------------


@event_app.command("send")
def send_event(
    user: str,
    action: str,
    source: Annotated[str, typer.Option(help="the upstream system")] = "cli",
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="the upstream's id (dedupe key)")
    ] = None,
    attr: Annotated[list[str] | None, typer.Option(help="attribute k=v (repeatable)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send one behavior to the sensor (POST /v1/events). The event id is the idempotency
    key: the same id from the same source is taken once."""
    attributes: dict[str, Any] = {}
    for pair in attr or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not k=v", param_hint="--attr")
        try:
            attributes[name] = json.loads(value)
        except ValueError:
            attributes[name] = value
    body = {
        "event_id": event_id or uuid.uuid4().hex,
        "source": source,
        "user_id": user,
        "action": action,
        "occurred_at": datetime.now(UTC).isoformat(),
        "attributes": attributes,
    }
    key = os.environ.get("JIFEN_INGEST_KEY", DEV_INGEST_KEY)
    answer = call("POST", "behavior_sensor", "/v1/events", json=body, headers={"X-Api-Key": key})
    show(
        answer,
        as_json,
        [
            f"accepted {answer.get('accepted')} (duplicates {answer.get('duplicates')}), "
            f"event_id {body['event_id']}"
        ],
    )


# -- the ledger -----------------------------------------------------------------------------


@app.command()
def balance(
    user: str,
    asset: Annotated[str, typer.Option(help="asset code")] = "points",
    as_json: JsonFlag = False,
) -> None:
    """A user's balance, pending points, debt and what expires soon."""
    account = call("GET", "rewards_ledger", f"/v1/accounts/{user}", params={"asset": asset})
    lines = [f"{user} {asset}: balance {account.get('balance')}"]
    for name in ("pending", "debt"):
        if account.get(name):
            lines.append(f"  {name} {account[name]}")
    for name in ("expiring_within_7_days", "expiring_within_30_days"):
        if account.get(name):
            lines.append(f"  {name.replace('_', ' ')}: {account[name]}")
    show(account, as_json, lines)


@app.command()
def history(
    user: str,
    asset: Annotated[str, typer.Option(help="asset code")] = "points",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The newest journal entries of an account."""
    page = call(
        "GET",
        "rewards_ledger",
        f"/v1/accounts/{user}/entries",
        params={"asset": asset, "limit": limit},
    )
    items = page.get("items", [])
    lines = [
        f"{e.get('created_at', '')[:19]}  {e.get('kind', ''):<10} {e.get('amount', 0):>8}  "
        f"balance {e.get('balance_after')}  {e.get('reason') or ''}"
        for e in items
    ]
    show(page, as_json, lines or [f"{user} has no {asset} entries"])


@app.command()
def adjust(
    user: str,
    points: Annotated[
        int, typer.Option("--points", "-p", help="positive credits, negative debits")
    ],
    reason: Annotated[str, typer.Option(help="why (kept in the journal)")],
    idempotency_key: Key,
    asset: Annotated[str, typer.Option(help="asset code")] = "points",
    validity_days: Annotated[
        int | None, typer.Option(min=1, help="credits: days until they expire")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Credit or debit points by hand. The same idempotency key again changes nothing."""
    if points == 0:
        raise typer.BadParameter("points must not be 0", param_hint="--points")
    body: dict[str, Any] = {
        "points": abs(points),
        "idempotency_key": idempotency_key,
        "reason": reason,
        "asset": asset,
    }
    if points > 0:
        if validity_days is not None:
            body["validity_days"] = validity_days
        answer = call("POST", "rewards_ledger", f"/v1/accounts/{user}/credits", json=body)
    else:
        answer = call("POST", "rewards_ledger", f"/v1/accounts/{user}/debits", json=body)
    show(
        answer,
        as_json,
        [
            f"{'credited' if points > 0 else 'debited'} {abs(points)} {asset} to {user}: "
            f"balance {answer.get('balance_after')}"
        ],
    )


@app.command()
def reconcile(as_json: JsonFlag = False) -> None:
    """Check that the books balance: the ledger's and the exchange's reconciliations.
    Exits 1 when either finds a violation."""
    results = {s: call("GET", s, "/v1/reconciliation") for s in ("rewards_ledger", "exchange")}
    lines = []
    for service, result in results.items():
        violations = result.get("violations", [])
        state = "ok" if result.get("ok") else f"{len(violations)} violations"
        lines.append(f"{service}: {state}")
        lines += [f"  {v}" for v in violations[:20]]
    show(results, as_json, lines)
    if not all(r.get("ok") for r in results.values()):
        raise typer.Exit(1)


# -- dead letters ---------------------------------------------------------------------------


def _bootstrap() -> str:
    return os.environ.get("JIFEN_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


async def _read_letters(topic: str, limit: int) -> list[dict[str, Any]]:
    """Every dead letter of `topic` (up to `limit`), oldest first, with its dlq offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=_bootstrap(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(dlq_topic(topic)) or set()
        assigned = [TopicPartition(dlq_topic(topic), p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        letters: list[dict[str, Any]] = []

        async def unread() -> bool:
            for tp in assigned:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while len(letters) < limit and await unread():
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp, records in batch.items():
                for record in records:
                    try:
                        letter = json.loads(record.value or b"{}")
                    except ValueError:
                        letter = {"error": "unreadable dead letter"}
                    letters.append(
                        {**letter, "dlq_partition": tp.partition, "dlq_offset": record.offset}
                    )
        return letters[:limit]
    finally:
        await consumer.stop()


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="the original topic, e.g. upstream.events")],
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The dead letters of a topic: who failed it, why, and the message."""
    letters = asyncio.run(_read_letters(topic, limit))
    lines = [
        f"#{x['dlq_partition']}:{x['dlq_offset']}  {x.get('consumer')}  "
        f"{x.get('topic')}[{x.get('partition')}]@{x.get('offset')}  {x.get('error', '')[:120]}"
        for x in letters
    ]
    show(letters, as_json, lines or [f"no dead letters on {dlq_topic(topic)}"])


async def _replay(letters: list[dict[str, Any]], key: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(), acks="all")
    await producer.start()
    try:
        for letter in letters:
            headers = [("jifen-replay", key.encode())]
            if letter.get("traceparent"):  # the trace it was part of goes on
                headers.append(("traceparent", str(letter["traceparent"]).encode()))
            await producer.send_and_wait(
                letter["topic"],
                base64.b64decode(letter["original_base64"]),
                key=letter["key"].encode() if letter.get("key") else None,
                headers=headers,
            )
    finally:
        await producer.stop()
    return len(letters)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="the original topic, e.g. upstream.events")],
    idempotency_key: Key,
    offset: Annotated[
        list[str] | None, typer.Option(help="only these letters: PARTITION:OFFSET (repeatable)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Put dead letters back on their topic, byte for byte with their key: they go through
    the normal consumer path again, and the consumers' inboxes (and the sensor's
    (source, event_id) dedupe) take each message once however often it is replayed. The
    replayed copies carry the key in a `jifen-replay` header."""
    letters = [
        x
        for x in asyncio.run(_read_letters(topic, sys.maxsize))
        if not offset or f"{x['dlq_partition']}:{x['dlq_offset']}" in set(offset)
    ]
    if offset and len(letters) != len(set(offset)):
        typer.echo("error: some of the given letters do not exist", err=True)
        raise typer.Exit(1)
    count = asyncio.run(_replay(letters, idempotency_key))
    show({"replayed": count}, as_json, [f"replayed {count} letters to {topic}"])


# -- read models ----------------------------------------------------------------------------


@rebuild_app.command("leaderboard")
def rebuild_leaderboard(
    code: str,
    period: Annotated[str, typer.Option(help="current or a period key")] = "current",
    as_json: JsonFlag = False,
) -> None:
    """Rebuild a leaderboard's rank index from PostgreSQL (engagement)."""
    answer = call(
        "POST", "engagement", f"/v1/leaderboards/{code}/rebuild", params={"period": period}
    )
    show(answer, as_json, [f"rebuilt {code}: {answer}"])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
