"""The ledger's pure rules (services/rewards_ledger/domain.py), one rule at a time."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from services.rewards_ledger.domain import (
    DebitCommand,
    DebitVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
    KeyUse,
    NewDebit,
    ReplayInBatch,
    ReplayStored,
    SpendableLot,
    after_taking,
    allocate,
    expiry_moves,
    is_due,
    key_reuse,
    plan_debits,
    refund_moves,
    refund_step,
    restore,
    running_balances,
    total_taken,
)
from shared.errors import DomainError, NotFound

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def lot(i: int, remaining: int, days: int | None, age: int = 0) -> SpendableLot:
    return SpendableLot(
        f"lot{i}",
        remaining,
        NOW + timedelta(days=days) if days is not None else None,
        NOW - timedelta(days=age),
    )


# Lots with distinct ids; expiries drawn from a small range so that ties happen.
lot_specs = st.lists(
    st.tuples(st.integers(0, 200), st.one_of(st.none(), st.integers(-5, 40)), st.integers(0, 3)),
    max_size=12,
)


def lots_of(spec: list[tuple[int, int | None, int]]) -> list[SpendableLot]:
    return [lot(i, r, d, a) for i, (r, d, a) in enumerate(spec)]


def expires_before(a: SpendableLot, b: SpendableLot) -> bool:
    """`a` expires strictly before `b` (a lot without expiry never does)."""
    return a.expires_at is not None and (b.expires_at is None or a.expires_at < b.expires_at)


# --- allocation ----------------------------------------------------------------------------------


def test_earliest_expiry_first_and_never_expiring_last() -> None:
    lots = [lot(1, 50, 30), lot(2, 30, 5), lot(3, 100, None), lot(4, 20, 60)]
    assert allocate(lots, 40) == [("lot2", 30), ("lot1", 10)]
    assert allocate(lots, 110) == [("lot2", 30), ("lot1", 50), ("lot4", 20), ("lot3", 10)]


def test_same_expiry_spends_the_older_lot_first() -> None:
    lots = [lot(1, 10, 5, age=0), lot(2, 10, 5, age=2)]
    assert allocate(lots, 15) == [("lot2", 10), ("lot1", 5)]


def test_insufficient_points_is_a_409_with_a_stable_code() -> None:
    with pytest.raises(InsufficientPoints) as info:
        allocate([lot(1, 5, 1)], 6)
    assert (info.value.code, info.value.status) == ("insufficient_points", 409)
    assert info.value.details == {"balance": 5, "requested": 6}


@pytest.mark.parametrize("points", [0, -1])
def test_allocating_nothing_is_a_programming_error(points: int) -> None:
    with pytest.raises(ValueError):
        allocate([lot(1, 5, 1)], points)


@given(lot_specs, st.integers(1, 1500))
def test_allocation_takes_exactly_the_points_earliest_expiry_first(spec, points) -> None:
    lots = lots_of(spec)
    before = copy.deepcopy(lots)
    available = sum(lt.remaining for lt in lots)
    if available < points:
        with pytest.raises(InsufficientPoints) as info:
            allocate(lots, points)
        assert info.value.details == {"balance": available, "requested": points}
        return
    taken = allocate(lots, points)
    assert lots == before  # the lots given are not changed
    by_id = {lt.id: lt for lt in lots}
    took = dict(taken)
    assert len(took) == len(taken)  # each lot at most once
    assert sum(took.values()) == points
    assert all(0 < p <= by_id[i].remaining for i, p in taken)
    # A lot is taken from only once every lot that expires strictly earlier is empty.
    for lot_id in took:
        for other in lots:
            if other.remaining > 0 and expires_before(other, by_id[lot_id]):
                assert took.get(other.id) == other.remaining
    # At most one lot keeps points after being taken from: the last one.
    assert [i for i, p in taken if p < by_id[i].remaining] in ([], [taken[-1][0]])


@given(lot_specs, st.integers(1, 1500))
def test_lots_after_a_debit_hold_what_was_left(spec, points) -> None:
    lots = lots_of(spec)
    assume(sum(lt.remaining for lt in lots) >= points)
    taken = allocate(lots, points)
    left = after_taking(lots, taken)
    took = dict(taken)
    expected = {lt.id: lt.remaining - took.get(lt.id, 0) for lt in lots}
    assert {lt.id: lt.remaining for lt in left} == {i: r for i, r in expected.items() if r > 0}
    assert sum(lt.remaining for lt in left) == sum(lt.remaining for lt in lots) - points
    # Spending the rest from what is left uses the same order as spending it all at once.
    rest = sum(lt.remaining for lt in left)
    if rest:
        assert total_taken([taken, allocate(left, rest)]) == allocate(lots, points + rest)


@given(st.lists(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(1, 50)), max_size=4)))
def test_total_taken_sums_each_lot_once(takings) -> None:
    total = total_taken(takings)
    assert len({lot_id for lot_id, _ in total}) == len(total)
    expected: Counter[str] = Counter()
    for taken in takings:
        for lot_id, pts in taken:
            expected[lot_id] += pts
    assert dict(total) == dict(expected)


def test_a_lot_is_due_once_its_expiry_is_reached() -> None:
    assert is_due(NOW, NOW) and is_due(NOW - timedelta(seconds=1), NOW)
    assert not is_due(NOW + timedelta(seconds=1), NOW) and not is_due(None, NOW)


# --- balances ------------------------------------------------------------------------------------

users = st.sampled_from(["u1", "u2", "u3"])


@given(
    st.dictionaries(users, st.integers(0, 1000), min_size=3),
    st.lists(st.tuples(users, st.integers(-500, 500)), max_size=20),
)
def test_running_balances_post_each_move_in_order(start, moves) -> None:
    original = dict(start)
    after, final = running_balances(start, moves)
    assert start == original
    assert len(after) == len(moves)
    for k, (user, _) in enumerate(moves):
        assert after[k] == start[user] + sum(a for u, a in moves[: k + 1] if u == user)
    assert list(final) == list(dict.fromkeys(u for u, _ in moves))
    for user in final:
        assert final[user] == start[user] + sum(a for u, a in moves if u == user)
        assert final[user] == [b for (u, _), b in zip(moves, after, strict=True) if u == user][-1]


@given(st.lists(st.tuples(users, st.integers(1, 100)), max_size=10))
def test_expiring_lots_takes_what_they_hold_off_their_owners(due_spec) -> None:
    class Due:
        def __init__(self, i: int, user_id: str, remaining: int) -> None:
            self.id, self.user_id, self.remaining = f"lot{i}", user_id, remaining

    due = [Due(i, u, r) for i, (u, r) in enumerate(due_spec)]
    start = {"u1": 1000, "u2": 1000, "u3": 1000}
    after, final = running_balances(start, expiry_moves(due))
    assert set(final) == {lt.user_id for lt in due}
    for user in final:
        assert final[user] == 1000 - sum(lt.remaining for lt in due if lt.user_id == user)
    # Each expiry entry's balance is its owner's previous one less what the lot held.
    last = dict(start)
    for lt, balance_after in zip(due, after, strict=True):
        assert balance_after == last[lt.user_id] - lt.remaining
        last[lt.user_id] = balance_after


# --- idempotency keys ----------------------------------------------------------------------------

key_uses = st.builds(
    KeyUse, st.sampled_from(["debit", "adjustment", "refund"]), users, st.integers(1, 100)
)


@given(key_uses)
def test_the_same_key_with_the_same_parameters_is_a_replay(use) -> None:
    assert key_reuse("k", use, KeyUse(use.kind, use.user_id, use.points)) is None


@given(key_uses, st.sampled_from([f.name for f in fields(KeyUse)]), st.data())
def test_the_same_key_with_any_other_parameter_is_refused(use, field, data) -> None:
    other = {
        "kind": st.sampled_from(["debit", "adjustment", "refund"]),
        "user_id": users,
        "points": st.integers(1, 100),
    }[field]
    value = data.draw(other.filter(lambda v: v != getattr(use, field)))
    refusal = key_reuse("key-1", use, replace(use, **{field: value}))
    assert isinstance(refusal, IdempotencyKeyReused)
    assert (refusal.code, refusal.status, refusal.details) == ("idempotency_key_reused", 409, {})
    assert refusal.message == (
        f"idempotency key 'key-1' was already used for a different {use.kind}"
    )


# --- debits --------------------------------------------------------------------------------------

keys = st.sampled_from(["k1", "k2", "k3", "k4"])
commands_st = st.lists(
    st.builds(DebitCommand, users, st.integers(1, 60), keys, st.just("r"), st.none()),
    max_size=10,
)
used_st = st.dictionaries(
    keys.map(lambda k: f"debit:{k}"),
    st.builds(KeyUse, st.sampled_from(["debit", "debit", "adjustment"]), users, st.integers(1, 60)),
    max_size=2,
)
voided_st = st.sets(keys.map(lambda k: f"debit:{k}"), max_size=2)
user_lots_st = st.dictionaries(
    users,
    st.lists(st.tuples(st.integers(1, 50), st.one_of(st.none(), st.integers(1, 9)))),
    max_size=3,
)


def accounts(spec: dict[str, list[tuple[int, int | None]]]):
    """Spendable lots by user (ids unique across users) and the matching balances."""
    lots = {
        u: [
            SpendableLot(f"{u}-lot{i}", r, NOW + timedelta(days=d) if d else None, NOW)
            for i, (r, d) in enumerate(ls)
        ]
        for u, ls in spec.items()
    }
    return lots, {u: sum(lt.remaining for lt in ls) for u, ls in lots.items()}


@given(commands_st, used_st, voided_st, user_lots_st)
def test_each_debit_of_a_batch_is_judged_as_if_it_came_alone(commands, used, voided, spec) -> None:
    """The batch verdicts are those of the same debits sent one at a time, each seeing what
    the ones before it did (a debit made earlier in the batch is then a stored one)."""
    lots, balances = accounts(spec)
    inputs = copy.deepcopy((used, voided, balances, lots))
    verdicts = plan_debits(commands, used, voided, balances, lots)
    assert (used, voided, balances, lots) == inputs  # nothing given is changed

    used_now, balances_now, lots_now = dict(used), dict(balances), dict(lots)
    for i, c in enumerate(commands):
        [alone] = plan_debits([c], used_now, voided, balances_now, lots_now)
        got = verdicts[i]
        if isinstance(alone, NewDebit):
            assert got == alone
            used_now[c.journal_key] = KeyUse("debit", c.user_id, c.points)
            balances_now[c.user_id] = alone.balance_after
            lots_now[c.user_id] = after_taking(lots_now[c.user_id], alone.taken)
        elif isinstance(alone, ReplayStored) and c.journal_key not in used:
            assert isinstance(got, ReplayInBatch)
            assert commands[got.index].journal_key == c.journal_key
            assert isinstance(verdicts[got.index], NewDebit)
        elif isinstance(alone, DomainError):
            assert isinstance(got, DomainError) and type(got) is type(alone)
            assert (got.code, got.message, got.details) == (
                alone.code,
                alone.message,
                alone.details,
            )
        else:
            assert got == alone


@given(commands_st, used_st, voided_st, user_lots_st)
def test_a_batch_of_debits_follows_the_rules(commands, used, voided, spec) -> None:
    lots, balances = accounts(spec)
    verdicts = plan_debits(commands, used, voided, balances, lots)
    assert len(verdicts) == len(commands)
    balance = dict(balances)
    first_debit: dict[str, int] = {}
    spent: Counter[str] = Counter()
    for i, (c, v) in enumerate(zip(commands, verdicts, strict=True)):
        key = c.journal_key
        earlier = used.get(key) or (
            KeyUse("debit", commands[first_debit[key]].user_id, commands[first_debit[key]].points)
            if key in first_debit
            else None
        )
        if earlier is not None:
            if earlier == KeyUse("debit", c.user_id, c.points):
                assert v == (ReplayStored() if key in used else ReplayInBatch(first_debit[key]))
            else:
                assert isinstance(v, IdempotencyKeyReused)
        elif key in voided:
            assert isinstance(v, DebitVoided) and v.code == "debit_voided" and v.status == 409
            assert c.idempotency_key in v.message
        elif balance.get(c.user_id, 0) < c.points:
            assert isinstance(v, InsufficientPoints)
            assert v.details == {"balance": balance.get(c.user_id, 0), "requested": c.points}
        else:
            assert isinstance(v, NewDebit)
            balance[c.user_id] -= c.points
            assert v.balance_after == balance[c.user_id] >= 0
            assert sum(p for _, p in v.taken) == c.points
            assert {lot_id for lot_id, _ in v.taken} <= {lt.id for lt in lots[c.user_id]}
            spent.update(dict(v.taken))
            first_debit[key] = i
    remaining = {lt.id: lt.remaining for ls in lots.values() for lt in ls}
    assert all(spent[lot_id] <= remaining[lot_id] for lot_id in spent)


def test_a_batch_example_mirrors_the_integration_test() -> None:
    lots = {"rich": [lot(1, 20, 10), lot(2, 50, 100)], "poor": [lot(3, 5, 100)]}
    balances = {"rich": 70, "poor": 5}
    used = {"debit:earlier": KeyUse("debit", "rich", 10)}
    commands = [
        DebitCommand("rich", 25, "twice", "first", "ref-1"),
        DebitCommand("poor", 10, "big"),
        DebitCommand("rich", 25, "twice", "other reason", None),  # reason/reference: not compared
        DebitCommand("rich", 10, "earlier"),
        DebitCommand("rich", 11, "earlier"),
        DebitCommand("poor", 1, "gone"),
        DebitCommand("nobody", 1, "ghost"),
        DebitCommand("rich", 45, "rest"),
        DebitCommand("rich", 1, "over"),
        DebitCommand("poor", 5, "twice"),  # the batch's key, another user
    ]
    v = plan_debits(commands, used, {"debit:gone"}, balances, lots)
    assert v[0] == NewDebit(45, [("lot1", 20), ("lot2", 5)])
    assert isinstance(v[1], InsufficientPoints)
    assert v[2] == ReplayInBatch(0) and v[3] == ReplayStored()
    assert isinstance(v[4], IdempotencyKeyReused) and isinstance(v[5], DebitVoided)
    assert isinstance(v[6], InsufficientPoints) and v[6].details["balance"] == 0
    assert v[7] == NewDebit(0, [("lot2", 45)])
    assert isinstance(v[8], InsufficientPoints)
    assert isinstance(v[9], IdempotencyKeyReused) and "different debit" in v[9].message


# --- refunds and voids ---------------------------------------------------------------------------

owners = st.one_of(st.none(), st.sampled_from(["u1", "u2"]))


@given(owners, owners, owners)
def test_a_refund_replays_voids_or_refunds_and_hides_other_users_keys(refunded, voided, debited):
    first = next((o for o in (refunded, voided, debited) if o is not None), None)
    if first is not None and first != "u1":
        with pytest.raises(NotFound) as info:
            refund_step("u1", "k", refunded, voided, debited)
        assert (info.value.code, info.value.status) == ("not_found", 404)
        assert info.value.message == "debit k does not exist"
        return
    step = refund_step("u1", "k", refunded, voided, debited)
    if refunded is not None:
        assert step == "replay_refund"
    elif voided is not None:
        assert step == "replay_void"
    elif debited is not None:
        assert step == "refund"
    else:
        assert step == "void"


def test_a_key_voided_by_a_refund_refuses_its_debit_forever() -> None:
    assert refund_step("u1", "k", None, None, None) == "void"  # no debit: void the key
    [late] = plan_debits([DebitCommand("u1", 5, "k")], {}, {"debit:k"}, {"u1": 50}, {})
    assert isinstance(late, DebitVoided)
    assert late.message == "debit 'k' was cancelled before it arrived; use a new key"
    assert refund_step("u1", "k", None, "u1", None) == "replay_void"  # the refund again
    # A debit stored before the void (a race) is replayed, not refused.
    [stored] = plan_debits(
        [DebitCommand("u1", 5, "k")], {"debit:k": KeyUse("debit", "u1", 5)}, {"debit:k"}, {}, {}
    )
    assert stored == ReplayStored()


allocations_st = st.lists(
    st.tuples(st.integers(1, 100), st.one_of(st.none(), st.integers(-30, 30))),
    max_size=8,
)


@given(allocations_st, st.integers(0, 1000))
def test_a_refund_gives_back_what_each_lot_gave_and_expires_the_lapsed_part(spec, balance):
    taken = [(f"lot{i}", pts) for i, (pts, _) in enumerate(spec)]
    expiry = {
        f"lot{i}": NOW + timedelta(days=d) if d is not None else None
        for i, (_, d) in enumerate(spec)
    }
    r = restore(taken, expiry, NOW)
    # Every allocation goes back exactly once, to its own lot, in the debit's order.
    assert sorted(r.to_lots + r.expiring) == sorted(taken)
    assert r.to_lots == [t for t in taken if t in r.to_lots]
    assert r.expiring == [t for t in taken if t in r.expiring]
    # The points reported as expiring at once are exactly those of lots expired by now.
    lapsed = {lot_id for lot_id, d in expiry.items() if d is not None and d <= NOW}
    assert {lot_id for lot_id, _ in r.expiring} == lapsed
    assert {lot_id for lot_id, _ in r.to_lots}.isdisjoint(lapsed)
    assert r.expired_points == sum(p for lot_id, p in taken if lot_id in lapsed)
    assert r.lapsed_lots == sorted(lapsed)
    # The balance gets the whole refund, then loses the expired part, one lot at a time.
    refunded = sum(p for _, p in taken)
    after, final = running_balances({"u1": balance}, refund_moves("u1", refunded, r))
    assert after[0] == balance + refunded
    assert final["u1"] == balance + refunded - r.expired_points == after[-1]
    assert len(after) == 1 + len(r.expiring)


@given(lot_specs, st.integers(1, 1500))
def test_refunding_a_debit_before_any_lot_expires_restores_every_lot(spec, points) -> None:
    lots = [lt for lt in lots_of(spec) if lt.expires_at is None or lt.expires_at > NOW]
    assume(sum(lt.remaining for lt in lots) >= points)
    taken = allocate(lots, points)
    r = restore(taken, {lt.id: lt.expires_at for lt in lots}, NOW)
    assert r.expiring == [] and r.expired_points == 0
    spent = {lt.id: lt.remaining for lt in after_taking(lots, taken)}
    for lot_id, pts in r.to_lots:
        spent[lot_id] = spent.get(lot_id, 0) + pts
    assert spent == {lt.id: lt.remaining for lt in lots if lt.remaining > 0}


def test_the_documented_late_refund() -> None:
    """30 points from a lot that expired since, 10 from a live one: 40 back, 30 expire."""
    taken = [("short", 30), ("long", 10)]
    expiry = {"short": NOW - timedelta(days=10), "long": NOW + timedelta(days=80)}
    r = restore(taken, expiry, NOW)
    assert (r.to_lots, r.expiring, r.expired_points) == ([("long", 10)], [("short", 30)], 30)
    after, _ = running_balances({"u": 40}, refund_moves("u", 40, r))
    assert after == [80, 50]
