import pytest
from pydantic import ValidationError

from services.notification.settings import NotificationSettings
from services.routing.settings import RoutingSettings


def test_each_service_reads_its_own_prefix_and_nested_sections(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "shared:9092")
    monkeypatch.setenv("MINYI_ROUTING__KAFKA__TOPIC_PREFIX", "wenling.")
    monkeypatch.setenv("MINYI_ROUTING__HTTP__PORT", "9002")
    monkeypatch.setenv("MINYI_NOTIFICATION__SMS__PROVIDER", "aliyun")
    routing = RoutingSettings()
    assert routing.kafka.bootstrap_servers == "shared:9092"
    assert routing.kafka.topic("minyi.case") == "wenling.minyi.case"
    assert routing.http.port == 9002
    assert NotificationSettings().sms.provider == "aliyun"


def test_a_service_variable_beats_the_shared_default(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://a/shared")
    monkeypatch.setenv("MINYI_ROUTING__DATABASE__URL", "postgresql://b/own")
    assert RoutingSettings().database.url == "postgresql://b/own"


def test_misspelt_settings_are_refused(monkeypatch):
    monkeypatch.setenv("MINYI_ROUTING__KAFKA__BOOTSTRAP_SERVER", "typo:9092")
    with pytest.raises(ValidationError):
        RoutingSettings()


def test_one_variable_of_a_section_keeps_the_sections_other_defaults(monkeypatch):
    monkeypatch.setenv("MINYI_ROUTING__HTTP__HOST", "0.0.0.0")
    settings = RoutingSettings()
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == 8002
