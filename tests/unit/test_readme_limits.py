"""README's Limits paragraph names the settings and their defaults as the code has them."""

from services.evaluation.settings import EvaluationSettings
from services.intake.settings import IntakeSettings
from tests.readme_examples import section


def test_the_limits_paragraph_gives_the_settings_defaults():
    limits = section("Limits")
    intake = IntakeSettings().rate_limit
    evaluation = EvaluationSettings().limits
    for variable, default in [
        ("MINYI_INTAKE__RATE_LIMIT__PER_ADDRESS", intake.per_address),
        ("MINYI_INTAKE__RATE_LIMIT__PER_PHONE", intake.per_phone),
        ("MINYI_EVALUATION__LIMITS__PER_ADDRESS", evaluation.per_address),
    ]:
        assert f"`{variable}`" in limits, variable
        assert f"`{default}`" in limits, (variable, default)
    assert "429" in limits
    assert "Retry-After" in limits
    assert "receipt page" in limits
    assert "share" in limits
