"""README's bad-input example: invalid in exactly one field (the phone), answered as it says."""

from tests.integration.intake_support import running_intake
from tests.readme_examples import bad_input_example


async def test_readme_s_bad_input_example_fails_on_the_phone_alone_as_documented(
    infra, database_url, topic_prefix
):
    body, status, documented = bad_input_example()
    async with running_intake(database_url, topic_prefix) as intake:
        answer = await intake.http.post("/api/v1/opinions", json=body)
        assert answer.status_code == status == 422
        assert answer.json() == documented
        assert [f["field"] for f in answer.json()["fields"]] == ["voter_phone"]
        assert await intake.count("opinions") == 0
        # Everything else in it is valid: with a real mobile number it is recorded.
        fixed = await intake.http.post(
            "/api/v1/opinions", json={**body, "voter_phone": "13800138000"}
        )
        assert fixed.status_code == 201, fixed.text
        assert await intake.count("opinions") == 1
