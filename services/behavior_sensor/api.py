"""HTTP ingest: validate, authorize per source, record, answer 202 at once."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from services.behavior_sensor import repository as repo
from services.behavior_sensor import service
from services.behavior_sensor.parts import Parts
from services.behavior_sensor.schemas import DivertedDecision
from services.behavior_sensor.settings import Settings
from shared.auth import Principal, principal
from shared.errors import InvalidInput, validation_response
from shared.events import BehaviorEnvelope
from shared.openapi import INGEST
from shared.service import Runtime, runtime_of
from shared.tracing import current
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["ingest"])
Caller = Annotated[Principal, Depends(principal)]
_envelopes = TypeAdapter(list[BehaviorEnvelope])

_ENVELOPE_EXAMPLE = {
    "event_id": "evt-1001",
    "source": "app",
    "user_id": "u-42",
    "action": "like",
    "occurred_at": "2026-11-22T10:00:00+08:00",
    "attributes": {"content_id": "post-7"},
}
# written out in place: the route reads its body by hand, so FastAPI adds no component for it
_ENVELOPE_SCHEMA = BehaviorEnvelope.model_json_schema()
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _ENVELOPE_SCHEMA,
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 1000,
                                    "items": _ENVELOPE_SCHEMA,
                                }
                            },
                        },
                    ]
                },
                "examples": {
                    "one": {"value": _ENVELOPE_EXAMPLE},
                    "batch": {"value": {"events": [_ENVELOPE_EXAMPLE]}},
                },
            }
        },
    }
}


def _read_envelopes(raw: bytes, max_events: int) -> list[BehaviorEnvelope] | JSONResponse:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from exc
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            raise InvalidInput("a batch body has only the key 'events'")
        items = body["events"]
        if not isinstance(items, list) or not items:
            raise InvalidInput("'events' must be a non-empty list of envelopes")
        if len(items) > max_events:
            raise InvalidInput(f"a batch holds at most {max_events} events, got {len(items)}")
    elif isinstance(body, dict):
        items = [body]
    else:
        raise InvalidInput('body must be one envelope object or {"events": [...]}')
    try:
        return _envelopes.validate_python(items)
    except ValidationError as exc:
        return validation_response(
            [{**e, "loc": ("events", *e["loc"])} for e in exc.errors(include_url=False)]
        )


@router.post("/events", status_code=202, openapi_extra={**_BODY_DOC, "security": INGEST})
async def ingest(request: Request, caller: Caller) -> Any:
    """Accept one behavior envelope or a batch; 202 with how many were new and how many repeats,
    once they are recorded (committed).

    The whole batch is validated first: one bad envelope rejects the batch and records nothing.
    Small requests arriving together are recorded in one transaction (group commit).
    """
    rt: Runtime[Settings, Parts] = runtime_of(request)
    envelopes = _read_envelopes(await request.body(), rt.settings.max_batch_events)
    if isinstance(envelopes, JSONResponse):
        return envelopes
    for source in {e.source for e in envelopes}:
        caller.require_source(source)
    accepted, duplicates = await rt.parts.intake.record(envelopes, current())
    return JSONResponse(status_code=202, content={"accepted": accepted, "duplicates": duplicates})


@router.get("/diverted")
async def list_diverted(
    caller: Caller,
    session: Reads,
    user_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Behaviors held back by the anti-farming limit (for the risk and operations teams)."""
    caller.require_scope("behavior:read")
    rows = await repo.diverted(session, user_id, limit)
    return {"items": [service.diverted_view(r) for r in rows]}


async def _decide(decision: str, body: DivertedDecision, session: Writes) -> JSONResponse:
    view, changed = await service.decide_diverted(
        session, body.source, body.event_id, decision, body.note, body.by
    )
    return JSONResponse(status_code=200, content={**view, "changed": changed})


@router.post("/diverted/release")
async def release_diverted(body: DivertedDecision, caller: Caller, session: Writes) -> Any:
    """Release a diverted behavior: it is published on behavior.events once and credited
    like any other. Releasing it again changes nothing (`changed: false`); a rejected one
    cannot be released (409 `invalid_transition`)."""
    caller.require_scope("behavior:decide")
    return await _decide("release", body, session)


@router.post("/diverted/reject")
async def reject_diverted(body: DivertedDecision, caller: Caller, session: Writes) -> Any:
    """Reject a diverted behavior for good: it is never published. Idempotent; a released
    one cannot be rejected (409 `invalid_transition`)."""
    caller.require_scope("behavior:decide")
    return await _decide("reject", body, session)
