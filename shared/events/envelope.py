"""The one envelope every Minyi event travels in, and the base of event payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Event(BaseModel):
    """Base of every event payload: past tense, versioned, owned by one aggregate type.

    Subclasses set the class variables; `aggregate_id()` names the Kafka key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    event_version: ClassVar[int]
    aggregate_type: ClassVar[str]

    def aggregate_id(self) -> str:
        raise NotImplementedError


E = TypeVar("E", bound=Event)


class EventEnvelope(BaseModel):
    """What is on the wire: the metadata of one event around its payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(description="Unique id of this event; consumers deduplicate on it.")
    event_type: str = Field(description="Past-tense name, e.g. `opinion.submitted`.")
    event_version: int = Field(ge=1, description="Version of the payload schema.")
    occurred_at: AwareDatetime
    producer: str = Field(description="The service that produced the event.")
    aggregate_type: str
    aggregate_id: str = Field(
        description="Also the Kafka message key, so one aggregate stays ordered."
    )
    correlation_id: UUID = Field(description="Shared by every event of one voter opinion's story.")
    causation_id: UUID | None = Field(default=None, description="The event that caused this one.")
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        producer: str,
        correlation_id: UUID,
        causation_id: UUID | None = None,
        occurred_at: datetime | None = None,
        event_id: UUID | None = None,
    ) -> Self:
        return cls(
            event_id=event_id or uuid4(),
            event_type=event.event_type,
            event_version=event.event_version,
            occurred_at=occurred_at or datetime.now(UTC),
            producer=producer,
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id(),
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=event.model_dump(mode="json"),
        )

    def caused(self, event: Event, *, producer: str) -> EventEnvelope:
        """Wrap `event` as a consequence of this one (same correlation, causation = this)."""
        return EventEnvelope.wrap(
            event, producer=producer, correlation_id=self.correlation_id, causation_id=self.event_id
        )

    def is_a(self, event_cls: type[Event]) -> bool:
        return (
            self.event_type == event_cls.event_type
            and self.event_version == event_cls.event_version
        )

    def payload_as(self, event_cls: type[E]) -> E:
        return event_cls.model_validate(self.payload)

    def headers(self) -> dict[str, str]:
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "event_version": str(self.event_version),
            "correlation_id": str(self.correlation_id),
            "producer": self.producer,
        }


def envelope_schema(event_cls: type[Event]) -> type[BaseModel]:
    """The wire shape of one event type (the envelope with its payload typed), for AsyncAPI."""
    from typing import Literal, cast

    from pydantic import create_model

    model: type[BaseModel] = create_model(
        f"{event_cls.__name__}Envelope",
        __base__=EventEnvelope,
        __doc__=event_cls.__doc__,
        event_type=(cast(Any, Literal[event_cls.event_type]), event_cls.event_type),
        event_version=(cast(Any, Literal[event_cls.event_version]), event_cls.event_version),
        payload=(event_cls, ...),
    )
    return model
