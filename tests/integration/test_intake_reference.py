"""Reference data: the seed and the admin API publish reference.changed; retired ids are
refused for new opinions."""

from __future__ import annotations

import json

import pytest

from shared import topics
from shared.auth import Role
from shared.reference import wenling
from tests.helpers import read_topic
from tests.integration.intake_support import running_intake, token
from tests.processes import run_command, service_env

pytestmark = pytest.mark.integration

NEW_STATION = {
    "town_id": "zeguo",
    "name": "泽国镇牧西村代表联络站",
    "head": "陈站长",
    "liaison_officer": "林联络员",
    "reception_day": "每月15日",
}


async def test_the_admin_api_upserts_and_retires_and_publishes_each_change(
    infra, database_url, topic_prefix
):
    async with running_intake(database_url, topic_prefix) as intake:
        ref = wenling()
        seeded = len(ref.towns + ref.stations + ref.categories + ref.departments + ref.deputies)
        admin = token(Role.ADMIN, subject="admin-1")
        put = await intake.http.put(
            "/api/v1/reference/station/zeguo-9", json={"data": NEW_STATION}, headers=admin
        )
        assert put.status_code == 200, put.text
        assert put.json()["data"]["reception_day"] == "每月15日"

        clerk = token(Role.STATION, station_id="zeguo-9")
        taken = await intake.http.post(
            "/api/v1/stations/zeguo-9/opinions",
            json={"channel": "mailbox", "content": "村道坑洼多，雨天积水严重"},
            headers=clerk,
        )
        assert taken.status_code == 201

        refused = await intake.http.put(
            "/api/v1/reference/station/x-1",
            json={"data": {**NEW_STATION, "town_id": "nowhere"}},
            headers=admin,
        )
        assert refused.status_code == 422
        assert refused.json()["fields"][0]["field"] == "data.town_id"
        assert (
            await intake.http.put(
                "/api/v1/reference/station/x-1", json={"data": NEW_STATION}, headers=clerk
            )
        ).status_code == 403

        retired = await intake.http.delete("/api/v1/reference/station/zeguo-9", headers=admin)
        assert retired.status_code == 200
        assert retired.json()["retired"] is True
        after = await intake.http.post(
            "/api/v1/stations/zeguo-9/opinions",
            json={"channel": "mailbox", "content": "村道坑洼多，雨天积水严重"},
            headers=clerk,
        )
        assert after.status_code == 422
        assert after.json()["fields"][0]["field"] == "station_id"

        records = await read_topic(topic_prefix + topics.REFERENCE, at_least=seeded + 2)
        changes = [json.loads(r.value)["payload"] for r in records]
        assert len(changes) == seeded + 2
        ours = [c for c in changes if c["id"] == "zeguo-9"]
        assert [c["retired"] for c in ours] == [False, True]
        assert ours[0]["kind"] == "station"
        assert {r.key for r in records if b"zeguo-9" in r.key} == {b"station:zeguo-9"}


async def test_the_cli_upserts_and_retires(infra, database_url, topic_prefix):
    async with running_intake(database_url, topic_prefix) as intake:
        env = service_env("intake", database_url=database_url, topic_prefix=topic_prefix)
        import subprocess
        import sys

        from tests.processes import ROOT

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "services.intake", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        done = cli(
            "reference-upsert",
            "category",
            "noise",
            "--data",
            '{"name": "噪声扰民", "case_kind": "general"}',
        )
        assert done.returncode == 0, done.stderr
        assert await intake.count("categories", "id = 'noise' AND retired_at IS NULL") == 1
        assert cli("reference-retire", "category", "noise").returncode == 0
        assert await intake.count("categories", "id = 'noise' AND retired_at IS NOT NULL") == 1
        assert cli("reference-retire", "category", "nothing").returncode == 1
        run_command("intake", "seed", env)  # the seed does not revive a retired record
        assert await intake.count("categories", "id = 'noise' AND retired_at IS NOT NULL") == 1
