"""Each service connects to PostgreSQL as its own role, limited to its own schema.

Real PostgreSQL, a database per test: `shared.db.roles.provision` (as administrator), the
migrations as each service's own role from an empty database, then what each role may and
may not do; provisioning is idempotent and repairs a schema an administrator migrated; the
service processes of the e2e and chaos runs (tests/processes.service_env) connect as the role.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.db import roles
from shared.db.migrations import apply_migrations, load_migrations, pending_migrations
from tests.processes import ROOT, ServiceProcess, run_command, service_env

pytestmark = pytest.mark.integration

SERVICES = roles.SERVICES


def migrations_dir(service: str) -> Path:
    return ROOT / "services" / service / "migrations"


async def connect_as(database_url: str, service: str) -> asyncpg.Connection[Any]:
    role = roles.ServiceRole(service, roles.DEV_PASSWORD)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        roles.role_url(database_url, role), server_settings={"search_path": service}
    )
    return conn


async def migrate_as_role(database_url: str, service: str) -> list[str]:
    conn = await connect_as(database_url, service)
    try:
        return await apply_migrations(conn, service, load_migrations(migrations_dir(service)))
    finally:
        await conn.close()


@pytest.fixture
async def provisioned(infra: object, database_url: str) -> str:
    """A database with the four roles provisioned and each schema migrated by its own role."""
    first = await roles.provision_url(database_url, roles.dev_roles())
    assert f"created schema intake owned by {roles.role_name('intake')}" in first
    for service in SERVICES:
        applied = await migrate_as_role(database_url, service)
        assert applied, f"{service}: nothing applied on an empty database"
    return database_url


async def test_migrations_run_as_each_role_from_an_empty_database(provisioned):
    admin = await asyncpg.connect(provisioned)
    try:
        for service in SERVICES:
            pending = await pending_migrations(
                admin, service, load_migrations(migrations_dir(service))
            )
            assert pending == [], service
            owners = await admin.fetch(
                """SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1""",
                service,
            )
            assert {r["owner"] for r in owners} == {roles.role_name(service)}
    finally:
        await admin.close()
    # Running them again as the role: nothing to do, and CREATE SCHEMA is not attempted.
    for service in SERVICES:
        assert await migrate_as_role(provisioned, service) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_a_role_uses_its_own_schema_and_nothing_else(provisioned, service):
    conn = await connect_as(provisioned, service)
    try:
        # Its own tables: the shared plumbing every schema has.
        await conn.execute(
            """INSERT INTO outbox (event_id, topic, message_key, event_type, payload)
               VALUES (gen_random_uuid(), 't', 'k', 'e', '{}'::jsonb)"""
        )
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        assert await conn.fetchval("DELETE FROM outbox RETURNING 1") == 1
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
        await conn.execute(f'CREATE TABLE "{service}".scratch (id int)')  # it owns the schema
        await conn.execute(f'DROP TABLE "{service}".scratch')

        for other in SERVICES:
            if other == service:
                continue
            for sql in (
                f'SELECT count(*) FROM "{other}".outbox',
                f'SELECT count(*) FROM "{other}".schema_migrations',
                f'DELETE FROM "{other}".processed_messages',
                f'CREATE TABLE "{other}".intruder (id int)',
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
        for sql in (
            "CREATE TABLE public.x (id int)",
            "CREATE SCHEMA elsewhere",
            "CREATE TEMP TABLE scratch (id int)",
            "CREATE ROLE someone",
            "CREATE DATABASE other",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        attributes = await conn.fetchrow(
            """SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
               FROM pg_roles WHERE rolname = current_user"""
        )
        assert attributes is not None
        assert not any(attributes.values())
    finally:
        await conn.close()


async def test_routing_tables_are_out_of_intake_s_reach(provisioned):
    """The issue's example: intake reading routing's cases."""
    conn = await connect_as(provisioned, "intake")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch("SELECT * FROM routing.cases")
    finally:
        await conn.close()


async def test_provisioning_twice_changes_nothing(provisioned):
    assert await roles.provision_url(provisioned, roles.dev_roles()) == []


async def test_provisioning_hands_an_administrator_s_schema_to_the_role(infra, database_url):
    """A database migrated by the administrator (before roles existed): provisioning makes the
    role the owner of the schema and of everything in it, and the role carries on from there."""
    admin = await asyncpg.connect(database_url)
    try:
        await apply_migrations(admin, "routing", load_migrations(migrations_dir("routing")))
    finally:
        await admin.close()
    changes = await roles.provision_url(database_url, roles.dev_roles(["routing"]))
    assert any(c.startswith("schema routing: owner ") for c in changes), changes
    assert "table routing.cases: owner -> minyi_routing" in changes
    assert "function routing.outbox_notify: owner -> minyi_routing" in changes
    conn = await connect_as(database_url, "routing")
    try:
        assert (
            await apply_migrations(conn, "routing", load_migrations(migrations_dir("routing")))
            == []
        )
        await conn.execute("INSERT INTO routing_config (key, value) VALUES ('k', 'v')")
        # bigserial: the sequence changed owner with its table.
        await conn.execute("INSERT INTO triage_rules (keyword, category_id) VALUES ('k', 'c')")
        # The trigger's function too (outbox inserts NOTIFY through it).
        await conn.execute(
            """INSERT INTO outbox (event_id, topic, message_key, event_type, payload)
               VALUES (gen_random_uuid(), 't', 'k', 'e', '{}'::jsonb)"""
        )
    finally:
        await conn.close()
    assert await roles.provision_url(database_url, roles.dev_roles(["routing"])) == []


def test_scram_verifiers_are_what_postgres_stores():
    verifier = roles.scram_verifier("correct horse")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert roles.scram_matches(verifier, "correct horse")
    assert not roles.scram_matches(verifier, "wrong")
    assert not roles.scram_matches(None, "correct horse")
    assert not roles.scram_matches("md5abc", "correct horse")


def test_a_service_dsn_must_name_the_service_s_role():
    role = roles.role_from_url("intake", "postgresql://minyi_intake:p%40ss@db:5432/minyi")
    assert (role.role, role.password) == ("minyi_intake", "p@ss")
    with pytest.raises(ValueError, match="expected 'minyi_intake'"):
        roles.role_from_url("intake", "postgresql://postgres:x@db:5432/minyi")
    url = roles.role_url("postgresql://postgres@127.0.0.1:15432/minyi?sslmode=disable", role)
    assert url == "postgresql://minyi_intake:p%40ss@127.0.0.1:15432/minyi?sslmode=disable"


async def test_the_cli_provisions_from_the_services_own_dsns(infra, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYI_")}
    env["DATABASE_URL"] = database_url
    for service in SERVICES:
        role = roles.ServiceRole(service, roles.DEV_PASSWORD)
        env[roles.service_env_var(service)] = roles.role_url(database_url, role)

    def cli(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", "db-provision"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = cli(env)
    assert done.returncode == 0, done.stderr
    assert "created schema evaluation owned by minyi_evaluation" in done.stdout
    again = cli(env)
    assert again.returncode == 0, again.stderr
    assert "db-provision: 0 change(s)" in again.stdout
    # A service DSN that is not the service's role is refused, and so is a missing one.
    wrong = {**env, "MINYI_ROUTING__DATABASE__URL": database_url}
    assert cli(wrong).returncode == 2
    missing = {k: v for k, v in env.items() if k != "MINYI_NOTIFICATION__DATABASE__URL"}
    refused = cli(missing)
    assert refused.returncode == 2
    assert "MINYI_NOTIFICATION__DATABASE__URL is not set" in refused.stderr


async def test_a_service_process_connects_as_its_own_role(
    infra, database_url, topic_prefix, tmp_path
):
    """What e2e and chaos runs get from tests/processes.service_env: the role, not the admin."""
    env = service_env("evaluation", database_url=database_url, topic_prefix=topic_prefix)
    assert env["MINYI_EVALUATION__DATABASE__URL"].startswith("postgresql://minyi_evaluation:")
    assert database_url not in env.values()
    run_command("evaluation", "migrate", env)
    process = ServiceProcess("evaluation", env, tmp_path)
    admin = await asyncpg.connect(database_url)
    try:
        process.start()
        users = await admin.fetch(
            """SELECT DISTINCT usename FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = 'evaluation'"""
        )
        assert [r["usename"] for r in users] == ["minyi_evaluation"]
    finally:
        process.stop()
        await admin.close()
