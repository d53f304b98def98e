"""Exchange use cases: the redemption saga, cancel and refund, fulfilment, recovery, reads.

Where each lives: `saga.py` (redeem: reserve, debit, finish), `cancellation.py` (cancel and
refund; compensation of an unconfirmed debit), `unfinished.py` (the recovery loop's step, and
`Exchange`, the saga as one object), `finishing.py` (the floor: finishing a redemption once,
giving back stock and limits), `fulfilment.py` (ship, deliver, the shipping queue),
`queries.py` (reads), `quick_options.py` (the quick options, with their collaborators). The catalog is `catalog.py`; the rules these apply are `domain.py`
(pure), the responses `schemas.py` (reading the typed rows of `repository/`), the messages
`events.py`, the SQL `repository/`. Use cases answer with an outcome (`domain.Outcome`),
never an HTTP status: `api.py` maps one to the other.

A redemption is a small saga over two services. Step one reserves stock (and the user's
per-user limit) in the exchange's database and records the redemption as `pending`. Step two
debits the ledger over HTTP with an idempotency key derived from the redemption id. Step
three issues the reward and marks the redemption `completed`, or releases the reservation
and marks it `failed`. Whoever finishes a redemption (the request itself or the recovery
loop) does so with a conditional update, so exactly one of them wins. When the ledger gives
no definite answer the redemption stays `pending`; the recovery loop asks again with the same
key and, past a deadline, compensates instead: it refunds or voids the debit at the ledger
and only then releases the stock. Cancellation is the mirror image (`cancelling` until the
ledger confirms the refund, then `cancelled`).

This is the one place where use cases commit in steps instead of in the request's unit of
work: the saga (`Exchange.redeem`, `Exchange.cancel`, the recovery loop) opens one
transaction per step itself, because the ledger call between two steps must never be made
while a row lock is held, and each step's record must be committed before the next starts.
Everything else here takes the caller's session and only flushes.
"""

from __future__ import annotations

from services.exchange.service.finishing import Answer, Finish, debit_key
from services.exchange.service.fulfilment import advance_fulfilment, fulfilment_queue
from services.exchange.service.queries import get_redemption, reconcile, user_redemptions
from services.exchange.service.quick_options import QuickOptions
from services.exchange.service.saga import LEDGER_BATCH, RedeemAnswer, RedeemRequest
from services.exchange.service.unfinished import Exchange

__all__ = [
    "LEDGER_BATCH",
    "Answer",
    "Exchange",
    "Finish",
    "QuickOptions",
    "RedeemAnswer",
    "RedeemRequest",
    "advance_fulfilment",
    "debit_key",
    "fulfilment_queue",
    "get_redemption",
    "reconcile",
    "user_redemptions",
]
