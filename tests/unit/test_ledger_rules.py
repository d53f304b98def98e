"""The ledger's rules together: an in-memory ledger that does what service.py does, but only
through the pure rules of domain.py, driven by random grants, debits (in batches), refunds and
the passing of time. After every step the books must balance as the reconciliation checks say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.rewards_ledger.domain import (
    DebitCommand,
    DebitVoided,
    KeyUse,
    NewDebit,
    ReplayInBatch,
    ReplayStored,
    SpendableLot,
    expiry_moves,
    is_due,
    plan_debits,
    refund_moves,
    refund_step,
    restore,
    running_balances,
    total_taken,
)
from shared.errors import NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USERS = st.sampled_from(["ann", "bob"])
KEYS = st.sampled_from([f"k{i}" for i in range(8)])


@dataclass
class Lot:
    id: str
    user_id: str
    points: int
    remaining: int
    expires_at: datetime | None
    active: bool = True


@dataclass(frozen=True)
class Entry:
    user_id: str
    kind: str
    amount: int
    balance_after: int
    key: str
    lot_id: str | None = None


class Ledger(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.lots: dict[str, Lot] = {}
        self.balances: dict[str, int] = {"ann": 0, "bob": 0}
        self.journal: list[Entry] = []
        self.by_key: dict[str, Entry] = {}
        self.allocations: dict[str, list[tuple[str, int]]] = {}  # journal key -> taken
        self.voids: dict[str, str] = {}  # journal key -> user
        self.answers: dict[str, tuple[int, list[tuple[str, int]]]] = {}  # debit key -> result

    # --- writing, as service.py does -------------------------------------------------------

    def append(self, moves_rows: list[tuple[str, str, int, str, str | None]]) -> None:
        after, final = running_balances(self.balances, [(u, a) for u, _, a, _, _ in moves_rows])
        for (user, kind, amount, key, lot_id), balance_after in zip(moves_rows, after, strict=True):
            entry = Entry(user, kind, amount, balance_after, key, lot_id)
            assert key not in self.by_key, f"journal key {key} used twice"
            self.journal.append(entry)
            self.by_key[key] = entry
        self.balances.update(final)

    def expire_due(self, user_ids: list[str]) -> None:
        due = sorted(
            (
                lt
                for lt in self.lots.values()
                if lt.user_id in user_ids and lt.active and lt.remaining > 0
            ),
            key=lambda lt: (lt.user_id, lt.expires_at or T0, lt.id),
        )
        due = [lt for lt in due if is_due(lt.expires_at, self.now)]
        self.append(
            [
                (u, "expire", a, f"expire:{lt.id}", lt.id)
                for lt, (u, a) in zip(due, expiry_moves(due), strict=True)
            ]
        )
        for lt in due:
            lt.active, lt.remaining = False, 0

    def spendable(self, user_id: str) -> list[SpendableLot]:
        return [
            SpendableLot(lt.id, lt.remaining, lt.expires_at, T0)
            for lt in self.lots.values()
            if lt.user_id == user_id and lt.active and lt.remaining > 0
        ]

    # --- rules ------------------------------------------------------------------------------

    @initialize()
    def opening_grants(self) -> None:
        self.grant("ann", 60, 5)
        self.grant("bob", 60, None)

    @rule(user=USERS, points=st.integers(1, 60), days=st.one_of(st.none(), st.integers(1, 20)))
    def grant(self, user: str, points: int, days: int | None) -> None:
        lot_id = f"lot{len(self.lots)}"
        expires = self.now + timedelta(days=days) if days is not None else None
        self.lots[lot_id] = Lot(lot_id, user, points, points, expires)
        self.append([(user, "credit", points, f"grant:{lot_id}", lot_id)])

    @rule(days=st.integers(1, 10))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule(
        batch=st.lists(
            st.builds(DebitCommand, USERS, st.integers(1, 25), KEYS), min_size=1, max_size=4
        ),
        repeat=st.booleans(),
    )
    def debit(self, batch: list[DebitCommand], repeat: bool) -> None:
        if repeat:  # the same debit twice in one batch
            batch = [*batch, batch[0]]
        existing = {
            c.journal_key: self.by_key[c.journal_key] for c in batch if c.journal_key in self.by_key
        }
        voided = {
            c.journal_key
            for c in batch
            if c.journal_key in self.voids and c.journal_key not in existing
        }
        spenders = sorted({c.user_id for c in batch if c.journal_key not in existing})
        self.expire_due(spenders)
        used = {k: KeyUse(e.kind, e.user_id, abs(e.amount)) for k, e in existing.items()}
        lots = {u: self.spendable(u) for u in spenders}
        verdicts = plan_debits(batch, used, voided, {u: self.balances[u] for u in spenders}, lots)

        new = [(c, v) for c, v in zip(batch, verdicts, strict=True) if isinstance(v, NewDebit)]
        for lot_id, pts in total_taken(v.taken for _, v in new):
            self.lots[lot_id].remaining -= pts
            assert self.lots[lot_id].remaining >= 0
        self.append([(c.user_id, "debit", -c.points, c.journal_key, None) for c, _ in new])
        for (c, v), entry in zip(new, self.journal[len(self.journal) - len(new) :], strict=True):
            assert entry.balance_after == v.balance_after
            self.allocations[c.journal_key] = v.taken
            self.answers[c.journal_key] = (v.balance_after, v.taken)

        for c, v in zip(batch, verdicts, strict=True):
            if isinstance(v, ReplayStored | ReplayInBatch):  # a replay answers the original
                stored = self.by_key[c.journal_key]
                assert (stored.user_id, -stored.amount) == (c.user_id, c.points)
                assert c.journal_key in self.answers
            if isinstance(v, DebitVoided):  # refused: its key was voided and never debited
                assert c.journal_key in self.voids and c.journal_key not in self.by_key

    @precondition(lambda self: any(k.startswith("debit:") for k in self.by_key))
    @rule(data=st.data(), same_user=st.booleans(), days_later=st.integers(0, 8))
    def refund_a_debit(self, data: st.DataObject, same_user: bool, days_later: int) -> None:
        self.now += timedelta(days=days_later)
        keys = sorted(k for k in self.by_key if k.startswith("debit:"))
        key = data.draw(st.sampled_from(keys))
        owner = self.by_key[key].user_id
        self.refund(owner if same_user else data.draw(USERS), key.removeprefix("debit:"))

    @rule(user=USERS, key=KEYS)
    def refund(self, user: str, key: str) -> None:
        dkey, rkey = f"debit:{key}", f"refund:{key}"
        done = self.by_key.get(rkey)
        void = None if done else self.voids.get(dkey)
        debit = None if done or void else self.by_key.get(dkey)
        owners = (done.user_id if done else None, void, debit.user_id if debit else None)
        try:
            step = refund_step(user, key, *owners)
        except NotFound:
            assert next(o for o in owners if o is not None) != user
            return
        if step == "replay_refund" or step == "replay_void":
            return
        if step == "void":
            assert dkey not in self.by_key
            self.voids[dkey] = user
            return
        assert debit is not None
        self.expire_due([user])
        taken = self.allocations[dkey]
        r = restore(taken, {lot_id: self.lots[lot_id].expires_at for lot_id, _ in taken}, self.now)
        for lot_id, pts in r.to_lots:
            assert self.lots[lot_id].active
            self.lots[lot_id].remaining += pts
        for lot_id in r.lapsed_lots:
            assert self.lots[lot_id].remaining == 0
            self.lots[lot_id].active = False
        moves = refund_moves(user, -debit.amount, r)
        rows = [(user, "refund", moves[0][1], rkey, None)] + [
            (user, "expire", -pts, f"expire:{lot_id}:{rkey}", lot_id) for lot_id, pts in r.expiring
        ]
        self.append(rows)
        self.allocations[rkey] = taken

    # --- the reconciliation checks ----------------------------------------------------------

    @invariant()
    def balances_match_lots_and_journal(self) -> None:
        for user, balance in self.balances.items():
            assert balance >= 0
            lots = sum(
                lt.remaining for lt in self.lots.values() if lt.user_id == user and lt.active
            )
            assert balance == lots
            entries = [e for e in self.journal if e.user_id == user]
            assert balance == sum(e.amount for e in entries)
            running = 0
            for e in entries:
                running += e.amount
                assert e.balance_after == running

    @invariant()
    def lots_account_for_their_points(self) -> None:
        for lt in self.lots.values():
            used = sum(
                (-p if key.startswith("refund:") else p)
                for key, taken in self.allocations.items()
                for lot_id, p in taken
                if lot_id == lt.id
            )
            expired = -sum(
                e.amount for e in self.journal if e.kind == "expire" and e.lot_id == lt.id
            )
            assert lt.points == lt.remaining + used + expired
            assert lt.remaining >= 0

    @invariant()
    def no_debit_after_its_void_and_debits_fully_allocated(self) -> None:
        assert not set(self.voids) & set(self.by_key)
        for key, entry in self.by_key.items():
            if entry.kind == "debit":
                assert sum(p for _, p in self.allocations[key]) == -entry.amount


TestLedgerRules = Ledger.TestCase
TestLedgerRules.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
