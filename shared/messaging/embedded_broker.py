"""Workarounds for the embedded broker (Tansu 0.6, `make run`, tests and chaos), in one place.

What they work around: in 100-cycle chaos runs Tansu left a consumer group in a state its
coordinator calls `Unknown` (forming, with a leader that is no longer a member) in which no
join ever completes, however often members leave and join again. The last resort is to
delete the group and recreate its committed offsets (`rebuild_group`). On Apache Kafka this
should never be needed: the broker refuses to delete a group with members, and then nothing
is changed. The chaos harness uses the same helpers to reset a group without joining it.
See docs/BENCHMARKS.md ("second session" of issue 4) for the analysis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest
from sqlalchemy import func, select

from shared.db import Database

log = logging.getLogger(__name__)


def rebuild_lock(group_id: str) -> Any:
    """Take the transaction-scoped advisory lock on rebuilding `group_id` (True if taken)."""
    return func.pg_try_advisory_xact_lock(func.hashtext(f"jifen.consumer-group:{group_id}"))


async def topic_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> list[TopicPartition]:
    """Every partition of `topics`, as the broker describes them."""
    described = await admin.describe_topics(list(topics))
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def delete_group(admin: AIOKafkaAdminClient, group_id: str) -> None:
    """Delete a consumer group and its committed offsets; raises the broker's refusal (real
    Kafka refuses while the group has members; the embedded broker never does)."""
    coordinator = await admin.find_coordinator(group_id)
    # aiokafka's admin client has no DeleteGroups call: its request class is public, the way
    # to send it to one node is not.
    response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group_id]))
    [(_, code)] = response.results
    if code:
        raise for_code(code)(f"could not delete group {group_id}")


@contextlib.asynccontextmanager
async def group_admin(
    bootstrap: str, group_id: str
) -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
    """An admin client, and a consumer of `group_id` that never joins it: it reads and commits
    the group's offsets for partitions it is assigned by hand."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="jifen-admin")
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    try:
        await admin.start()
        await reader.start()
        yield admin, reader
    finally:
        try:
            await reader.stop()
        finally:
            await admin.close()


async def rebuild_group(bootstrap: str, db: Database, group_id: str, topics: Sequence[str]) -> bool:
    """Delete a consumer group that no longer completes joins and recreate its committed
    offsets; True when rebuilt, False when another replica is doing it or the broker refused.

    Seen with the embedded broker (Tansu 0.6) in 100-cycle chaos runs: a group left in a state
    its coordinator calls `Unknown` (forming, with a leader that is no longer a member),
    holding only the member that is joining, and no join ever completes, however often the
    member leaves and joins again (a fresh group on the same broker joins in seconds).
    Deleting the group clears that state, and its committed offsets with it, so they are read
    first and committed again right after, before a member can join and fall back to the
    earliest offset.

    Nothing is lost or applied twice: committed offsets never run ahead of the database, so
    whatever a member commits meanwhile, or a snapshot that is a little old, means at worst
    records delivered again, which the inbox turns away. Replicas of one service share a
    database, and the advisory lock lets one of them rebuild at a time: a rebuild that read
    offsets between another's delete and its recommit would delete them for good. Real Kafka
    refuses to delete a group that has members (nothing is then recommitted).
    """
    async with db.transaction() as session:
        if not await session.scalar(select(rebuild_lock(group_id))):
            log.info("group %s: another replica is rebuilding it", group_id)
            return False
        async with group_admin(bootstrap, group_id) as (admin, reader):
            saved = {}
            for tp in await topic_partitions(admin, topics):
                offset = await reader.committed(tp)
                if offset is not None:
                    saved[tp] = offset
            try:
                await delete_group(admin, group_id)
            except KafkaError as exc:
                log.warning("group %s: the broker would not delete it: %r", group_id, exc)
                return False
            if saved:
                reader.assign(list(saved))
                await reader.commit(saved)
            log.warning(
                "group %s: deleted and recreated with its committed offsets on %d partitions",
                group_id,
                len(saved),
            )
            return True
