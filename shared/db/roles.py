"""One PostgreSQL login role per service, limited to the service's own schema.

`provision` runs with an administrator connection (a superuser, or the database owner with
CREATEROLE who can `SET ROLE` to the service roles) and makes, for each service:

- a LOGIN role `minyi_<service>` (NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS), its password from configuration, sent as a SCRAM verifier (never in clear);
- the schema `<service>` owned by that role, and every table, view, sequence, function and
  type in it (objects an administrator created there before, e.g. by migrating as the
  administrator, change owner);
- CONNECT on the database; nothing on any other schema.

and, for the database: PUBLIC loses its default CONNECT and TEMPORARY rights and its CREATE on
schema `public`. Safe to run again: it changes only what differs and reports what it changed
(nothing, the second time). Roles are cluster-wide: several databases of one server (the
tests' databases) share them; concurrent runs retry on the catalog conflicts they may meet.

The migration runner then works as the service's own role: the schema exists and is its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

# Every service's schema is named after it (services/<name>/app.py SCHEMA).
SERVICES = ("intake", "routing", "notification", "evaluation")
ROLE_PREFIX = "minyi_"
# Development only: the local stack (trust authentication, see tools/stack.py) and the tests.
# Real deployments take each role's password from that service's DSN (a secret).
DEV_PASSWORD = "minyi-dev-db-password"  # noqa: S105 - the documented development default
SCRAM_ITERATIONS = 4096
RETRIES = 5

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ServiceRole:
    service: str
    password: str | None  # None: the role's password is left alone (or none is set)

    def __post_init__(self) -> None:
        for name in (self.role, self.schema):
            if not _IDENT.match(name):
                raise ValueError(f"not a plain identifier: {name!r}")

    @property
    def role(self) -> str:
        return role_name(self.service)

    @property
    def schema(self) -> str:
        return self.service


def role_name(service: str) -> str:
    return f"{ROLE_PREFIX}{service}"


def service_env_var(service: str) -> str:
    """The variable a service reads its own DSN from (shared/settings.py)."""
    return f"MINYI_{service.upper()}__DATABASE__URL"


def role_url(base_url: str, role: ServiceRole) -> str:
    """`base_url` (host, port, database, options) with the service role as its user."""
    parts = urlsplit(base_url)
    hosts = parts.netloc.rpartition("@")[2]
    user = quote(role.role, safe="")
    if role.password:
        user += ":" + quote(role.password, safe="")
    return urlunsplit(parts._replace(netloc=f"{user}@{hosts}"))


def role_from_url(service: str, url: str) -> ServiceRole:
    """The role a service's DSN names (which must be `minyi_<service>`) and its password."""
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    if user != role_name(service):
        raise ValueError(
            f"{service_env_var(service)} connects as {user!r}, expected {role_name(service)!r}"
        )
    password = unquote(parts.password) if parts.password else None
    return ServiceRole(service, password)


# --------------------------------------------------------------------------- SCRAM


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (it accepts it as the password)."""
    salt = secrets.token_bytes(16)
    stored, server = _scram_keys(password, salt, iterations)
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored).decode()}:{b64(server).decode()}"
    )


def scram_matches(verifier: str | None, password: str) -> bool:
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if match is None:
        return False
    iterations, salt, stored, server = match.groups()
    want = (base64.b64decode(stored), base64.b64decode(server))
    return _scram_keys(password, base64.b64decode(salt), int(iterations)) == want


# --------------------------------------------------------------------------- provisioning

_ROLE_ATTRIBUTES = {
    "rolcanlogin": ("LOGIN", True),
    "rolsuper": ("NOSUPERUSER", False),
    "rolcreatedb": ("NOCREATEDB", False),
    "rolcreaterole": ("NOCREATEROLE", False),
    "rolreplication": ("NOREPLICATION", False),
    "rolbypassrls": ("NOBYPASSRLS", False),
}
_RELATION_KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
_RELATION_KINDS |= {"f": "FOREIGN TABLE", "S": "SEQUENCE"}
_ROUTINE_KINDS = {"f": "FUNCTION", "p": "PROCEDURE", "a": "AGGREGATE", "w": "FUNCTION"}

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any]
else:
    Connection = asyncpg.Connection


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _ensure_role(conn: Connection, role: ServiceRole, *, superuser: bool) -> list[str]:
    attributes = " ".join(keyword for keyword, _ in _ROLE_ATTRIBUTES.values())
    row = await conn.fetchrow(
        f"SELECT {', '.join(_ROLE_ATTRIBUTES)} FROM pg_roles WHERE rolname = $1", role.role
    )
    password = f" PASSWORD '{scram_verifier(role.password)}'" if role.password else ""
    if row is None:
        await conn.execute(f"CREATE ROLE {_q(role.role)} WITH {attributes}{password}")
        return [f"created role {role.role}"]
    changes = []
    if any(row[column] != wanted for column, (_, wanted) in _ROLE_ATTRIBUTES.items()):
        await conn.execute(f"ALTER ROLE {_q(role.role)} WITH {attributes}")
        changes.append(f"reset the attributes of role {role.role}")
    if role.password:
        # Only a superuser may read pg_authid; anyone else sets the password every time.
        stored = None
        if superuser:
            stored = await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role.role
            )
        if not scram_matches(stored, role.password):
            await conn.execute(f"ALTER ROLE {_q(role.role)} WITH{password}")
            changes.append(f"set the password of role {role.role}")
    return changes


async def _ensure_schema(conn: Connection, role: ServiceRole) -> list[str]:
    schema, owner = _q(role.schema), _q(role.role)
    current = await conn.fetchval(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", role.schema
    )
    if current is None:
        await conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")
        return [f"created schema {role.schema} owned by {role.role}"]
    changes = []
    if current != role.role:
        await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
        changes.append(f"schema {role.schema}: owner {current} -> {role.role}")
    # Tables first: their indexes, owned sequences (serial, identity) and row types follow.
    relations = await conn.fetch(
        """SELECT c.relname, c.relkind::text AS relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND pg_get_userbyid(c.relowner) <> $2
           ORDER BY c.relname""",
        role.schema,
        role.role,
    )
    relations += await conn.fetch(
        """SELECT c.relname, c.relkind::text AS relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind = 'S' AND pg_get_userbyid(c.relowner) <> $2
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
           ORDER BY c.relname""",
        role.schema,
        role.role,
    )
    for r in relations:
        kind = _RELATION_KINDS[r["relkind"]]
        await conn.execute(f"ALTER {kind} {schema}.{_q(r['relname'])} OWNER TO {owner}")
        changes.append(f"{kind.lower()} {role.schema}.{r['relname']}: owner -> {role.role}")
    routines = await conn.fetch(
        """SELECT p.proname, p.prokind::text AS prokind,
                  pg_get_function_identity_arguments(p.oid) AS args
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) <> $2
           ORDER BY p.proname""",
        role.schema,
        role.role,
    )
    for p in routines:
        kind = _ROUTINE_KINDS[p["prokind"]]
        signature = f"{schema}.{_q(p['proname'])}({p['args']})"
        await conn.execute(f"ALTER {kind} {signature} OWNER TO {owner}")
        changes.append(f"{kind.lower()} {role.schema}.{p['proname']}: owner -> {role.role}")
    # Enums, domains, ranges and stand-alone composite types (not tables' row types).
    types = await conn.fetch(
        """SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           LEFT JOIN pg_class c ON c.oid = t.typrelid
           WHERE n.nspname = $1 AND pg_get_userbyid(t.typowner) <> $2
             AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
           ORDER BY t.typname""",
        role.schema,
        role.role,
    )
    for t in types:
        await conn.execute(f"ALTER TYPE {schema}.{_q(t['typname'])} OWNER TO {owner}")
        changes.append(f"type {role.schema}.{t['typname']}: owner -> {role.role}")
    return changes


async def _lock_down_database(conn: Connection, roles: Sequence[ServiceRole]) -> list[str]:
    changes = []
    database = await conn.fetchval("SELECT current_database()")
    acl = """SELECT a.grantee, a.privilege_type FROM pg_database d,
               aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
             WHERE d.datname = current_database()"""
    granted = {(r["grantee"], r["privilege_type"]) for r in await conn.fetch(acl)}
    if any(grantee == 0 for grantee, _ in granted):  # 0: PUBLIC
        await conn.execute(f"REVOKE ALL ON DATABASE {_q(database)} FROM PUBLIC")
        changes.append(f"database {database}: PUBLIC's default rights revoked")
    for role in roles:
        oid = await conn.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", role.role)
        if (oid, "CONNECT") not in granted:
            await conn.execute(f"GRANT CONNECT ON DATABASE {_q(database)} TO {_q(role.role)}")
            changes.append(f"database {database}: CONNECT granted to {role.role}")
    public_create = await conn.fetchval(
        """SELECT count(*) FROM pg_namespace n,
             aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
           WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'"""
    )
    if public_create:
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        changes.append("schema public: PUBLIC's CREATE revoked")
    return changes


async def provision(conn: Connection, roles: Sequence[ServiceRole]) -> list[str]:
    """Make the roles, schemas and grants what they should be; return what was changed."""
    superuser = bool(await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = user"))
    for attempt in range(1, RETRIES + 1):
        try:
            async with conn.transaction():
                changes: list[str] = []
                for role in roles:
                    changes += await _ensure_role(conn, role, superuser=superuser)
                changes += await _lock_down_database(conn, roles)
                for role in roles:
                    changes += await _ensure_schema(conn, role)
                return changes
        except (
            asyncpg.UniqueViolationError,
            asyncpg.DuplicateObjectError,
            asyncpg.SerializationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.InternalServerError,  # "tuple concurrently updated" (catalog rows)
        ) as exc:
            # Another run (another database of the same server) got there first: look again.
            if attempt == RETRIES or (
                isinstance(exc, asyncpg.InternalServerError) and "concurrently" not in str(exc)
            ):
                raise
    raise AssertionError("unreachable")


async def provision_url(admin_url: str, roles: Sequence[ServiceRole]) -> list[str]:
    conn: Connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        return await provision(conn, roles)
    finally:
        await conn.close()


def dev_roles(services: Sequence[str] = SERVICES) -> list[ServiceRole]:
    return [ServiceRole(service, DEV_PASSWORD) for service in services]
