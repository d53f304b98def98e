"""SQL of spending: which debit keys were used or voided before."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Boolean, Text, column, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.models import journal_entries
from services.rewards_ledger.repository.rows import JournalEntry, row_as

# For each (key, asset): the journal entry that used it, or whether it was voided.
_USED_KEYS = text(
    f"SELECT {', '.join(f'e.{c.name}' for c in journal_entries.c)}, k.key AS used_key, "
    "k.asset AS used_asset, v.idempotency_key IS NOT NULL AS voided "
    "FROM unnest(CAST(:keys AS text[]), CAST(:assets AS text[])) AS k(key, asset) "
    "LEFT JOIN journal_entries e ON e.idempotency_key = k.key AND e.asset = k.asset "
    "LEFT JOIN debit_voids v ON v.idempotency_key = k.key AND v.asset = k.asset "
    "WHERE e.id IS NOT NULL OR v.idempotency_key IS NOT NULL"
).columns(
    *journal_entries.c,
    column("used_key", Text),
    column("used_asset", Text),
    column("voided", Boolean),
)


async def used_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], JournalEntry], set[tuple[str, str]]]:
    """For (journal key, asset) pairs: the journal entry of those already used, and the rest
    of them that were voided."""
    if not keys:
        return {}, set()
    entries: dict[tuple[str, str], JournalEntry] = {}
    voided: set[tuple[str, str]] = set()
    params = {"keys": [k for k, _ in keys], "assets": [a for _, a in keys]}
    for r in await session.execute(_USED_KEYS, params):
        if r.id is not None:
            entries[(r.used_key, r.used_asset)] = row_as(JournalEntry, r)
        elif r.voided:
            voided.add((r.used_key, r.used_asset))
    return entries, voided
