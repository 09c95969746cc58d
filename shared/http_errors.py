"""The error body every service answers with, and its place in the OpenAPI documents.

Every 4xx/5xx answer of the four services has one shape (shared/http.py produces it):
`error` (a machine-readable name), `message` (for people), `fields` on 422, plus keys some
answers add (`state` on routing's 409s, `items` on intake's batch 422s).

A route declares the errors its handler gives with `errors(...)`::

    @router.post("/cases/{case_id}/route", responses=errors(403, 404, 409))

`errors()` always adds 503 (the database is out of reach; `database=False` for a route that
never touches it). What the route's shape implies is added when the document is made
(`complete_error_responses`, installed by `shared.http.install_common`): 401 where a
dependency reads the caller's token, 403 where a dependency guards roles on top of it, 422
where a parameter or the body can fail validation, 400 where a body is parsed (FastAPI's answer
to one it cannot read), 413 on bodies where the app limits their size.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.auth import Principal

REF = "#/components/schemas/"


class FieldError(BaseModel):
    field: str = Field(description="The field's path, e.g. `voter_phone` or `items.3.content`.")
    message: str


class ErrorBody(BaseModel):
    """What every error answer carries."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(
        description="What went wrong, for programs: e.g. validation_failed, unauthorized, "
        "forbidden, not_found, conflict, illegal_transition, rule_violation, "
        "payload_too_large, too_many_requests, service_unavailable."
    )
    message: str = Field(description="What went wrong, for people.")
    fields: list[FieldError] | None = Field(
        default=None, description="422: each invalid field and why (nothing was changed)."
    )
    items: list[int] | None = Field(
        default=None, description="422 of a batch: the indexes of the invalid items."
    )
    state: str | None = Field(
        default=None, description="409 illegal_transition / rule_violation: the case's state."
    )


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}}

DESCRIPTIONS: dict[int, str] = {
    400: "The request cannot be read (e.g. a body that is not UTF-8); nothing was changed.",
    401: "Not signed in, or the token is invalid or has expired.",
    403: "Signed in, but this account may not do this.",
    404: "Not found (or not visible to this account).",
    409: "Conflicts with the current state; nothing was changed.",
    410: "Gone: no longer possible.",
    413: "The body is larger than the limit; nothing was read.",
    422: "A field is invalid (named in `fields`); nothing was changed.",
    429: "Too many requests; try again after Retry-After seconds.",
    503: "The database (or another dependency) is out of reach for a moment; nothing was "
    "changed: try again after Retry-After seconds.",
}
HEADERS: dict[int, dict[str, Any]] = {401: WWW_AUTHENTICATE, 429: RETRY_AFTER, 503: RETRY_AFTER}


def error_response(status: int, note: str | None = None) -> dict[str, Any]:
    """One `responses=` entry: the error body and, where the answer has them, its headers."""
    entry: dict[str, Any] = {
        "model": ErrorBody,
        "description": note or DESCRIPTIONS.get(status, "An error."),
    }
    if status in HEADERS:
        entry["headers"] = HEADERS[status]
    return entry


def errors(
    *statuses: int, notes: Mapping[int, str] | None = None, database: bool = True
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: each status it can answer with its error body, and 503
    unless `database=False`. `notes` replaces the generic description of a status."""
    wanted = set(statuses) | ({503} if database else set())
    notes = notes or {}
    return {s: error_response(s, notes.get(s)) for s in sorted(wanted)}


# ---- what a route's shape implies --------------------------------------------------------

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def implied_statuses(route: Any, *, body_limit: bool) -> set[int]:
    """The error statuses a route (an `APIRoute`, or FastAPI's context of an included one) can
    answer because of its shape, whatever its handler does."""
    implied: set[int] = set()
    principal_calls = [c for c in _calls(route.dependant) if _returns_principal(c)]
    if principal_calls:
        implied.add(401)  # a token that is malformed, forged or expired
    if any(_is_role_guard(route.dependant, c) for c in principal_calls):
        implied.add(403)
    if _can_fail_validation(route):
        implied.add(422)
    if route.body_field is not None:
        implied.add(400)  # FastAPI: a body it cannot parse (e.g. JSON that is not UTF-8)
    if body_limit and route.methods - BODYLESS_METHODS:
        implied.add(413)
    return implied


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _returns_principal(call: Callable[..., Any]) -> bool:
    try:
        hints = typing.get_type_hints(call)
    except Exception:  # an annotation that does not resolve: not ours
        return inspect.signature(call).return_annotation in (Principal, "Principal")
    return hints.get("return") is Principal


def _is_role_guard(dependant: Dependant, call: Callable[..., Any]) -> bool:
    """A Principal dependency built on another one: it refuses roles (403)."""
    for sub in dependant.dependencies:
        if sub.call is call:
            return any(c is not call and _returns_principal(c) for c in _calls(sub))
        if _is_role_guard(sub, call):
            return True
    return False


def _can_fail_validation(route: Any) -> bool:
    if route.body_field is not None:
        return True
    return any(_param_can_fail(d) for d in [route.dependant, *_dependants(route.dependant)])


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _param_can_fail(dependant: Dependant) -> bool:
    if dependant.body_params:
        return True
    params = [*dependant.query_params, *dependant.header_params, *dependant.cookie_params]
    if any(p.field_info.is_required() or not _is_plain_text(p.field_info) for p in params):
        return True
    return any(not _is_plain_text(p.field_info) for p in dependant.path_params)


def _is_plain_text(info: Any) -> bool:
    """Any string passes: `str` (or `str | None`) without constraints."""
    return info.annotation in (str, str | None) and not info.metadata


# ---- the documents ------------------------------------------------------------------------


def complete_error_responses(
    document: dict[str, Any], routes: list[Any], *, body_limit: bool
) -> dict[str, Any]:
    """Add to an OpenAPI document what each route's shape implies (`implied_statuses`), with
    the common error body, in place of FastAPI's own 422 (`detail`, a shape we never send)."""
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        implied = implied_statuses(route, body_limit=body_limit)
        declared = {s for s in route.responses if isinstance(s, int)}
        for method in sorted(route.methods or ()):
            operation = document.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if 422 not in declared:
                responses.pop("422", None)  # FastAPI's guess, shaped `detail`
            for status in sorted(implied - declared):
                responses[str(status)] = _document_entry(status)
            for status, entry in responses.items():
                if status.isdigit() and status[0] in "45" and "content" not in entry:
                    entry["content"] = _document_entry(int(status))["content"]
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _add_error_schemas(schemas)
    for name in ("HTTPValidationError", "ValidationError"):
        if not _references(document, name):
            schemas.pop(name, None)  # FastAPI's 422 shape, which no service answers
    return document


def _document_entry(status: int) -> dict[str, Any]:
    entry = {k: v for k, v in error_response(status).items() if k != "model"}
    entry["content"] = {"application/json": {"schema": {"$ref": f"{REF}{ErrorBody.__name__}"}}}
    return entry


def _add_error_schemas(schemas: dict[str, Any]) -> None:
    _, definitions = models_json_schema(
        [(ErrorBody, "serialization")], ref_template=REF + "{model}"
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _references(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == f"{REF}{name}" or any(
            _references(v, name) for v in node.values()
        )
    if isinstance(node, list):
        return any(_references(v, name) for v in node)
    return False
