"""README's Limits section names the settings and their defaults as the code has them."""

from console.settings import ConsoleSettings
from services.evaluation.settings import EvaluationSettings
from services.intake.settings import IntakeSettings
from services.notification.settings import NotificationSettings
from services.routing.settings import RoutingSettings
from tests.readme_examples import section


def test_the_limits_paragraph_gives_the_settings_defaults():
    limits = section("Limits")
    intake = IntakeSettings()
    evaluation = EvaluationSettings().limits
    routing = RoutingSettings().limits
    for variable, default in [
        ("MINYI_INTAKE__RATE_LIMIT__PER_ADDRESS", intake.rate_limit.per_address),
        ("MINYI_INTAKE__RATE_LIMIT__PER_PHONE", intake.rate_limit.per_phone),
        ("MINYI_INTAKE__WECHAT__FRESHNESS_S", intake.wechat.freshness_s),
        ("MINYI_INTAKE__LIMITS__MAX_BODY_BYTES", intake.limits.max_body_bytes),
        ("MINYI_EVALUATION__LIMITS__PER_ADDRESS", evaluation.per_address),
        ("MINYI_EVALUATION__LIMITS__MAX_BODY_BYTES", evaluation.max_body_bytes),
        ("MINYI_ROUTING__LIMITS__SIGNIN_MAX_FAILURES", routing.signin_max_failures),
        ("MINYI_ROUTING__LIMITS__SIGNIN_WINDOW_S", routing.signin_window_s),
        ("MINYI_ROUTING__LIMITS__MAX_BODY_BYTES", routing.max_body_bytes),
        (
            "MINYI_NOTIFICATION__CALLBACKS__MAX_BODY_BYTES",
            NotificationSettings().callbacks.max_body_bytes,
        ),
        ("MINYI_CONSOLE__HTTP__MAX_BODY_BYTES", ConsoleSettings().http.max_body_bytes),
    ]:
        assert f"`{variable}`" in limits, variable
        assert f"`{default}`" in limits, (variable, default)
    assert "429" in limits
    assert "Retry-After" in limits
    assert "receipt page" in limits
    assert "share" in limits
    assert "TRUSTED_PROXIES" in limits
