"""stable_id is uuid5 in the Jifen namespace, computed faster: the ids must never change."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.events import JIFEN_NAMESPACE, stable_id


@given(st.lists(st.one_of(st.text(), st.integers()), min_size=1, max_size=6))
def test_stable_id_is_uuid5_of_its_parts(parts: list[object]) -> None:
    expected = uuid.uuid5(JIFEN_NAMESPACE, "\x1f".join(str(p) for p in parts))
    assert stable_id(*parts) == str(expected)


def test_ids_already_minted_stay_the_same() -> None:
    # behavior_id("app", "e-1") as every earlier release minted it
    assert stable_id("behavior", "app", "e-1") == "28e800e9-6997-5191-a4fe-9262e762cf51"
