"""Consumer lag of this service's consumer groups, exported as a Prometheus gauge.

Lag = the partition's end offset − the group's committed offset, summed per topic. Read every
`interval_s` with a group-less consumer (end offsets) and the admin client (committed offsets).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.metrics import CONSUMER_LAG

log = structlog.get_logger(__name__)


async def group_lag(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topics: Iterable[str]
) -> dict[str, int]:
    committed = await admin.list_consumer_group_offsets(group)
    lag: dict[str, int] = {}
    described = {d["topic"]: d for d in await admin.describe_topics(list(topics))}
    for topic in topics:
        partitions = [p["partition"] for p in described.get(topic, {}).get("partitions", [])]
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            continue
        ends = await consumer.end_offsets(tps)
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            total += max(0, ends[tp] - done)
        lag[topic] = total
    return lag


class LagMonitor:
    def __init__(
        self,
        *,
        service: str,
        bootstrap_servers: str,
        groups: dict[str, list[str]],
        interval_s: float = 15.0,
    ) -> None:
        self.service = service
        self.bootstrap_servers = bootstrap_servers
        self.groups = groups
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.groups:
            self._task = asyncio.create_task(self._run(), name=f"{self.service}-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False
            )
            try:
                await admin.start()
                await consumer.start()
                while True:
                    for group, topics in self.groups.items():
                        for topic, lag in (await group_lag(admin, consumer, group, topics)).items():
                            CONSUMER_LAG.labels(self.service, group, topic).set(lag)
                    await asyncio.sleep(self.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: try again later, never kill the service
                log.warning("consumer_lag_unavailable", error=repr(exc))
                await asyncio.sleep(self.interval_s)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                with contextlib.suppress(Exception):
                    await admin.close()
