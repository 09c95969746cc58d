"""Who may sign in: the accounts `seed` provides, and the rule that keeps the published
development password out of every deployment.

- dev profile (`MINYI_PROFILE=dev`: `make up`, the tests): with `accounts.seed_dev_accounts`,
  one account per department and station, a committee, an operator and an admin, all with
  `accounts.dev_password` (documented in the README, so known to everyone).
- any other profile: `seed` creates or updates the one admin of `accounts.bootstrap_admin_id`
  / `bootstrap_admin_password` (a secret of the deployment) and nothing else, and deactivates
  accounts still holding the development password (a cluster seeded before it learnt
  better); routing refuses to start while an active account has that password.
- in every profile, `python -m services.routing account` creates, changes or deactivates one
  account (a password of at least 12 characters, never the development one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.routing.settings import DEV_PASSWORD, AccountSettings, password_problem
from services.routing.store import RoutingStore
from shared.auth import Role
from shared.reference import wenling
from shared.settings import DeploymentProfile, deployment_profile

AccountRow = tuple[str, str, str | None, str | None]  # client id, role, department, station


@dataclass(frozen=True)
class StaffAccount:
    """Who an account is: its client id, role, and the department or station it serves."""

    client_id: str
    role: Role
    department_id: str | None = None
    station_id: str | None = None

    def problem(self) -> str | None:
        """Why this combination is not an account (None: it is)."""
        if self.role in (Role.ANONYMOUS, Role.VOTER):
            return f"{self.role.value} is not a staff role"
        if (self.role is Role.DEPARTMENT) != (self.department_id is not None):
            return "a department account, and only one, names its department"
        if (self.role is Role.STATION) != (self.station_id is not None):
            return "a station account, and only one, names its station"
        return None


class AccountRefused(ValueError):
    """An account that may not be created as asked (the reason is the message)."""


class DevPasswordInUse(RuntimeError):
    """Active accounts have the published development password outside the dev profile."""


def password_hasher(accounts: AccountSettings) -> PasswordHasher:
    """argon2id with the configured cost."""
    return PasswordHasher(
        time_cost=accounts.argon2_time_cost,
        memory_cost=accounts.argon2_memory_kib,
        parallelism=accounts.argon2_parallelism,
    )


def dev_accounts() -> list[AccountRow]:
    """The development accounts (dev profile only)."""
    ref = wenling()
    return [
        *((f"dept-{d.id}", "department", d.id, None) for d in ref.departments),
        *((f"station-{s.id}", "station", None, s.id) for s in ref.stations),
        ("committee", "committee", None, None),
        ("operator", "operator", None, None),
        ("admin", "admin", None, None),
    ]


def _matches(secret_hash: str, password: str) -> bool:
    try:
        return bool(PasswordHasher().verify(secret_hash, password))
    except (VerificationError, InvalidHashError):
        return False


async def accounts_with_dev_password(store: RoutingStore) -> list[str]:
    """Active accounts whose password is the published development password."""
    rows = await store.active_account_hashes()

    def check() -> list[str]:
        return [client for client, secret_hash in rows if _matches(secret_hash, DEV_PASSWORD)]

    return await asyncio.to_thread(check)


def dev_password_forbidden() -> bool:
    """Whether the profile forbids the development password (every profile but dev)."""
    return deployment_profile() is not DeploymentProfile.DEV


async def refuse_dev_passwords(store: RoutingStore) -> None:
    """Outside the dev profile: DevPasswordInUse, naming the accounts, if any has the
    development password."""
    if not dev_password_forbidden():
        return
    found = await accounts_with_dev_password(store)
    if found:
        raise DevPasswordInUse(
            f"refusing to start: {len(found)} active account(s) have the published development "
            f"password ({', '.join(found)}); run `python -m services.routing seed` in this "
            "profile, which deactivates them, then sign in as the bootstrap admin"
        )


async def put_account(
    store: RoutingStore, accounts: AccountSettings, account: StaffAccount, password: str
) -> bool:
    """Create or update `account` (active, argon2id of `password`); True if it is new.
    AccountRefused when the account or the password breaks the rules."""
    problem = account.problem() or password_problem(password, client_id=account.client_id)
    if problem:
        raise AccountRefused(f"account {account.client_id!r} refused: {problem}")
    secret_hash = await asyncio.to_thread(password_hasher(accounts).hash, password)
    try:
        return await store.put_account(
            account.client_id,
            secret_hash,
            account.role.value,
            account.department_id,
            account.station_id,
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise AccountRefused(f"no department {account.department_id!r}") from exc


async def seed_accounts(store: RoutingStore, accounts: AccountSettings) -> list[str]:
    """Provide the accounts the profile calls for; lines for the seed's summary."""
    lines: list[str] = []
    hasher = password_hasher(accounts)
    if accounts.bootstrap_admin_id and accounts.bootstrap_admin_password:
        created = await put_account(
            store,
            accounts,
            StaffAccount(accounts.bootstrap_admin_id, Role.ADMIN),
            accounts.bootstrap_admin_password.get_secret_value(),
        )
        verb = "created" if created else "updated"
        lines.append(f"routing: bootstrap admin {accounts.bootstrap_admin_id!r} {verb}")
    if accounts.seed_dev_accounts:  # settings allow it in the dev profile only
        existing = await store.existing_accounts()
        wanted = [a for a in dev_accounts() if a[0] not in existing]
        password = accounts.dev_password.get_secret_value()
        await store.add_accounts(
            [(client, hasher.hash(password), role, dept, st) for client, role, dept, st in wanted]
        )
        names = ", ".join(a[0] for a in dev_accounts())
        lines.append(
            f"routing: dev accounts ({len(wanted)} new; password: accounts.dev_password): {names}"
        )
    if dev_password_forbidden():
        found = await accounts_with_dev_password(store)
        if found:
            await store.deactivate_accounts(found)
            lines.append(
                f"routing: deactivated {len(found)} account(s) with the published development "
                f"password: {', '.join(found)}"
            )
        if not accounts.bootstrap_admin_id:
            lines.append(
                "routing: no bootstrap admin (set MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_ID "
                "and __BOOTSTRAP_ADMIN_PASSWORD)"
            )
    return lines
