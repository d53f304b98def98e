"""Set-based statements for batches: one array parameter per column, unnested into rows.

A batch of 500 rows written as a multi-row VALUES list is a new statement for every batch size:
SQLAlchemy compiles it again (thousands of bind parameters) and PostgreSQL plans it again.
`unnest` of one array per column keeps the statement text fixed, so it is compiled once,
prepared once per connection and sent with a handful of parameters whatever the batch size.
Profiles of the consumers showed compilation alone taking 35-50% of their CPU before this.

    LOTS = Bulk("lots", {"id": "text", "user_id": "text", "points": "bigint"})
    await session.execute(LOTS.insert(), LOTS.params(rows))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Bulk:
    table: str
    columns: Mapping[str, str]  # column -> SQL type of its values (jsonb travels as text)
    prefix: str = "b_"  # parameter names are prefix + column, to stay clear of other binds

    def source(self, alias: str = "v") -> str:
        """`unnest(...) WITH ORDINALITY AS v(col, ..., n)`; n keeps the input order."""
        arrays = ", ".join(
            f"CAST(:{self.prefix}{c} AS {'text' if t == 'jsonb' else t}[])"
            for c, t in self.columns.items()
        )
        return f"unnest({arrays}) WITH ORDINALITY AS {alias}({', '.join(self.columns)}, n)"

    def values(self, alias: str = "v") -> str:
        return ", ".join(
            f"CAST({alias}.{c} AS jsonb)" if t == "jsonb" else f"{alias}.{c}"
            for c, t in self.columns.items()
        )

    def assign(self, keys: Sequence[str]) -> str:
        """`col = v.col, ...` for every column but `keys`: the SET list of an update."""
        return ", ".join(
            f"{c} = {value}"
            for c, value in zip(self.columns, self.values().split(", "), strict=True)
            if c not in keys
        )

    def insert(self, suffix: str = "", constants: Mapping[str, str] | None = None) -> TextClause:
        """INSERT of every row, in input order; `suffix` adds ON CONFLICT / RETURNING;
        `constants` sets more columns to the same SQL expression in every row."""
        constants = constants or {}
        columns = ", ".join([*self.columns, *constants])
        values = ", ".join([self.values(), *constants.values()])
        return text(
            f"INSERT INTO {self.table} ({columns}) "
            f"SELECT {values} FROM {self.source()} ORDER BY v.n {suffix}"
        )

    def update(self, keys: Sequence[str], sets: str, suffix: str = "") -> TextClause:
        """UPDATE table rows matched on `keys` from the batch; `sets` may use v.<column>;
        `suffix` adds RETURNING."""
        match = " AND ".join(f"{self.table}.{k} = v.{k}" for k in keys)
        return text(f"UPDATE {self.table} SET {sets} FROM {self.source()} WHERE {match} {suffix}")

    def params(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
        rows = list(rows)
        out: dict[str, list[Any]] = {}
        for c, t in self.columns.items():
            values = [r[c] for r in rows]
            if t == "jsonb":
                values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            out[f"{self.prefix}{c}"] = values
        return out


@dataclass(frozen=True)
class KeyedRows:
    """Rows addressed by a key (one or more columns), created when missing and locked in key
    order: two transactions locking overlapping sets of keys then never deadlock.

        COUNTERS = KeyedRows(Bulk("counters", {"user_id": "text", "day": "date"}), "t.n")
        rows = await COUNTERS.lock(session, [("ann", day), ("bob", day)])  # {key: row}
    """

    keys: Bulk
    read: str  # what to read of each locked row besides its key, on the table aliased `t`
    # compiled once: the statement text is fixed whatever the batch size
    _create: TextClause = field(init=False, repr=False, compare=False)
    _lock: TextClause = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_create", self.create_statement())
        object.__setattr__(self, "_lock", self.lock_statement())

    def create_statement(self) -> TextClause:
        return self.keys.insert("ON CONFLICT DO NOTHING")

    def lock_statement(self) -> TextClause:
        keys = ", ".join(self.keys.columns)
        on_t = ", ".join(f"t.{c}" for c in self.keys.columns)
        return text(
            f"SELECT {on_t}, {self.read} FROM {self.keys.table} t "
            f"JOIN {self.keys.source()} USING ({keys}) ORDER BY {on_t} FOR UPDATE OF t"
        )

    async def lock(
        self, session: AsyncSession, keys: Iterable[tuple[Any, ...]], *, create: bool = True
    ) -> dict[tuple[Any, ...], Row[Any]]:
        """Lock the rows of `keys` (creating the missing ones unless `create` is False, when a
        missing key is simply absent from the answer); returns them by key."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        names = list(self.keys.columns)
        params = self.keys.params(dict(zip(names, key, strict=True)) for key in ordered)
        if create:
            await session.execute(self._create, params)
        rows = await session.execute(self._lock, params)
        return {tuple(getattr(r, c) for c in names): r for r in rows}
