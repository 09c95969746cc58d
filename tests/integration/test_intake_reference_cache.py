"""Intake's in-process reference cache and group commit, on real PostgreSQL.

- a change through the admin API is visible to the very next request (the cache forgets);
- a change written by another replica (another connection) is visible within the cache's TTL
  (polled with a generous timeout, no timed assertion);
- group commit keeps each request's guarantees: its key (replayed, conflicting, used twice in
  one batch), its outbox rows, and all-or-nothing for a batch that fails.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest

from services.intake.domain import Opinion, new_receipt_code
from services.intake.settings import ReferenceCacheSettings
from services.intake.store import (
    IdempotencyConflict,
    IdempotencyKey,
    IntakeStore,
    PendingSave,
    Saved,
)
from shared.auth import Role
from shared.events import Channel
from shared.reference import wenling
from tests.integration.intake_support import running_intake, token

pytestmark = pytest.mark.integration

NEW_STATION = {
    "town_id": "zeguo",
    "name": "泽国镇牧西村代表联络站",
    "head": "陈站长",
    "liaison_officer": "林联络员",
    "reception_day": "每月15日",
}


def form(station_id: str) -> dict[str, str]:
    return {"channel": "online", "station_id": station_id, "content": "路灯坏了很久没有人修理"}


async def test_an_admin_change_is_visible_to_the_next_request(infra, database_url, topic_prefix):
    stations = [s.id for s in wenling().stations]
    cached, retired_elsewhere = stations[0], stations[1]
    ttl = ReferenceCacheSettings(ttl_s=3600)  # nothing expires during the test
    async with running_intake(database_url, topic_prefix, reference_cache=ttl) as intake:
        admin = token(Role.ADMIN, subject="admin-1")
        assert (await intake.http.post("/api/v1/opinions", json=form(cached))).status_code == 201

        # Written behind the process's back: the cache still holds the station (it is not
        # read per request), until the TTL or this process's own next change.
        await intake.pool.execute(
            "UPDATE stations SET retired_at = now() WHERE id = $1", retired_elsewhere
        )
        still = await intake.http.post("/api/v1/opinions", json=form(retired_elsewhere))
        assert still.status_code == 201

        gone = await intake.http.delete(f"/api/v1/reference/station/{cached}", headers=admin)
        assert gone.status_code == 200
        refused = await intake.http.post("/api/v1/opinions", json=form(cached))
        assert refused.status_code == 422
        assert refused.json()["fields"][0]["field"] == "station_id"
        # The reload read everything again, including the other replica's change.
        other = await intake.http.post("/api/v1/opinions", json=form(retired_elsewhere))
        assert other.status_code == 422

        put = await intake.http.put(
            "/api/v1/reference/station/zeguo-9", json={"data": NEW_STATION}, headers=admin
        )
        assert put.status_code == 200
        assert (await intake.http.post("/api/v1/opinions", json=form("zeguo-9"))).status_code == 201


async def test_a_change_by_another_replica_is_seen_within_the_ttl(
    infra, database_url, topic_prefix
):
    station = wenling().stations[2].id
    ttl = ReferenceCacheSettings(ttl_s=0.5)
    async with running_intake(database_url, topic_prefix, reference_cache=ttl) as intake:
        assert (await intake.http.post("/api/v1/opinions", json=form(station))).status_code == 201
        other = await asyncpg.connect(database_url, server_settings={"search_path": "intake"})
        try:
            await other.execute("UPDATE stations SET retired_at = now() WHERE id = $1", station)
        finally:
            await other.close()
        deadline = time.monotonic() + 60  # generous: the bound is 0.5 s
        while True:
            reply = await intake.http.post("/api/v1/opinions", json=form(station))
            if reply.status_code == 422:
                break
            assert reply.status_code == 201
            assert time.monotonic() < deadline, "the retirement never became visible"
            await asyncio.sleep(0.1)


def opinion(content: str = "小区门口道路破损严重，雨天积水") -> Opinion:
    opinion_id = uuid4()
    return Opinion(
        opinion_id=opinion_id,
        receipt_code=new_receipt_code(),
        channel=Channel.ONLINE,
        station_id=wenling().stations[0].id,
        town_id=wenling().stations[0].town_id,
        category_id=None,
        deputy_id=None,
        content=content,
        voter_name=None,
        voter_phone="13800138000",
        submitted_at=datetime.now(UTC),
    )


def pending(o: Opinion, key: str | None = None, request_hash: str = "h1") -> PendingSave:
    idem = None if key is None else IdempotencyKey("public", key, request_hash)
    return PendingSave([o], {"opinion_id": str(o.opinion_id)}, idem)


async def test_a_group_commit_keeps_each_requests_key_and_outbox_rows(
    infra, database_url, topic_prefix
):
    async with running_intake(database_url, topic_prefix) as intake:
        store = IntakeStore(intake.pool, topic_prefix=topic_prefix)
        before = opinion()
        await store.save_opinions(
            [before],
            response={"opinion_id": str(before.opinion_id)},
            idempotency=IdempotencyKey("public", "used-before", "h0"),
        )
        await intake.pool.execute("DELETE FROM outbox")
        a, b, c, d, e, f = (opinion() for _ in range(6))
        outcomes = await store.save_many(
            [
                pending(a, "k1"),
                pending(b, "k1"),  # the same request again, in the same batch: a replay
                pending(c, "k1", "h2"),  # the same key, another request: a conflict
                pending(d),  # no key
                pending(e, "used-before", "h0"),  # a retry of an earlier request
                pending(f, "used-before", "h9"),  # an earlier key, another request
            ]
        )
        assert outcomes[0] == Saved({"opinion_id": str(a.opinion_id)}, replayed=False)
        assert outcomes[1] == Saved({"opinion_id": str(a.opinion_id)}, replayed=True)
        assert isinstance(outcomes[2], IdempotencyConflict)
        assert outcomes[3] == Saved({"opinion_id": str(d.opinion_id)}, replayed=False)
        assert outcomes[4] == Saved({"opinion_id": str(before.opinion_id)}, replayed=True)
        assert isinstance(outcomes[5], IdempotencyConflict)
        written = {r["id"] for r in await intake.pool.fetch("SELECT id FROM opinions")}
        assert written == {before.opinion_id, a.opinion_id, d.opinion_id}
        announced = {
            r["message_key"]
            for r in await intake.pool.fetch(
                "SELECT message_key FROM outbox WHERE event_type = 'opinion.submitted'"
            )
        }
        assert announced == {str(a.opinion_id), str(d.opinion_id)}


async def test_a_failing_group_commit_writes_nothing(infra, database_url, topic_prefix):
    async with running_intake(database_url, topic_prefix) as intake:
        store = IntakeStore(intake.pool, topic_prefix=topic_prefix)
        good, bad = opinion(), opinion("文本里有一个 \x00 字符，无法保存")
        with pytest.raises(asyncpg.PostgresError):
            await store.save_many([pending(good, "g"), pending(bad, "b")])
        assert await intake.count("opinions") == 0
        assert await intake.count("outbox", "event_type <> 'reference.changed'") == 0
        assert await intake.count("idempotency_keys") == 0


async def test_concurrent_requests_commit_in_groups_and_each_gets_its_receipt(
    infra, database_url, topic_prefix
):
    station = wenling().stations[0].id
    async with running_intake(database_url, topic_prefix) as intake:

        async def submit(i: int, key: str) -> dict[str, str]:
            body = {**form(station), "content": f"路灯坏了很久没有人修理（{i % 40}）"}
            reply = await intake.http.post(
                "/api/v1/opinions", json=body, headers={"Idempotency-Key": key}
            )
            assert reply.status_code == 201, reply.text
            result: dict[str, str] = reply.json()
            return result

        # 80 requests, 40 distinct submissions each sent twice at once (a double click).
        replies = await asyncio.gather(*(submit(i, f"key-{i % 40:04d}") for i in range(80)))
        for i in range(40):
            assert replies[i]["receipt_code"] == replies[i + 40]["receipt_code"]
        assert await intake.count("opinions") == 40
        assert await intake.count("outbox", "event_type = 'opinion.submitted'") == 40
        bad = await intake.http.post(
            "/api/v1/opinions",
            json={**form(station), "content": "另一个请求用了同一个键"},
            headers={"Idempotency-Key": "key-0000"},
        )
        assert bad.status_code == 409
