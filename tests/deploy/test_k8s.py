"""The Kustomize overlays render, validate offline and keep the platform's rules.

Built-in kinds are validated with kubernetes-validate (strict: unknown fields fail) against
the oldest Kubernetes we support and the newest schema it ships. kubernetes-validate has no
schemas for custom resources (it raises SchemaNotFoundError for them), so the Strimzi and
KEDA resources get structural checks of our own below: apiVersion, kind, metadata.name and
the spec fields their CRDs require.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

import kubernetes_validate
import pytest

from shared import topics
from shared.messaging.consumer import group_id
from shared.settings import KafkaSettings
from tests.deploy.support import (
    K8S,
    KAFKA_POM,
    SERVICES,
    Manifest,
    of_kind,
    overlay_names,
    pod_specs,
    render,
)

OVERLAYS = overlay_names()
MIN_KUBERNETES = "1.30"
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
# Consumer groups each consumer scales on (KEDA), as the code names them.
CONSUMED = {
    "routing": [topics.OPINION],
    "notification": [topics.CASE],
    "evaluation": [topics.CASE, topics.NOTIFICATION],
}
# Secrets the operator creates (documented in deploy/k8s/README.md), with their keys.
OPERATOR_SECRETS = {
    # One DSN per service, its own role (shared/db/roles.py).
    "minyi-secrets": {f"{s.upper()}_DATABASE_URL" for s in SERVICES} | {"MINYI_AUTH_SECRET"},
    # The administrator: the migrations Job's provisioning step only.
    "minyi-db-admin": {"DATABASE_URL"},
    # The first admin account: the migrations Job's routing seed only.
    "minyi-bootstrap-admin": {"username", "password"},
    "minyi-sms": {
        "ALIYUN_ACCESS_KEY_ID",
        "ALIYUN_ACCESS_KEY_SECRET",
        "TENCENT_SECRET_ID",
        "TENCENT_SECRET_KEY",
        "ALIYUN_CALLBACK_TOKEN",
        "TENCENT_CALLBACK_TOKEN",
    },
}


def kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(KAFKA_POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    assert version
    return version


def _name(m: Manifest) -> str:
    return f"{m['kind']}/{m['metadata']['name']}"


def _containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_the_dev_and_prod_overlays_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", [MIN_KUBERNETES, kubernetes_validate.latest_version()])
def test_built_in_kinds_validate_strictly(overlay, version):
    unknown = set()
    for m in render(overlay):
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add((m["apiVersion"], m["kind"]))
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {_name(m)} at {path}: {exc.message}")
    # Only the custom resources may lack a schema (no built-in kind skipped by a typo).
    assert unknown <= CUSTOM_KINDS, unknown - CUSTOM_KINDS


def secrets_with_values(manifests: tuple[Manifest, ...]) -> list[str]:
    return [_name(m) for m in of_kind(manifests, "Secret") if m.get("data") or m.get("stringData")]


def _require(m: Manifest, *paths: str) -> list[str]:
    missing = []
    for path in paths:
        node: Any = m
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(f"{_name(m)}: {path}")
                break
            node = node[key]
    return missing


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_the_fields_their_crds_require(overlay):
    """Structural check (kubernetes-validate has no CRD schemas): what Strimzi and KEDA need."""
    problems: list[str] = []
    for m in render(overlay):
        if (m["apiVersion"], m["kind"]) not in CUSTOM_KINDS:
            continue
        problems += _require(m, "metadata.name", "spec")
        kind = m["kind"]
        if kind == "Kafka":
            problems += _require(m, "spec.kafka.listeners", "spec.kafka.version")
            annotations = m["metadata"].get("annotations", {})
            if annotations.get("strimzi.io/node-pools") != "enabled":
                problems.append(f"{_name(m)}: KafkaNodePools need strimzi.io/node-pools")
            for listener in m["spec"]["kafka"]["listeners"]:
                problems += [
                    f"{_name(m)}: listener {listener.get('name')} lacks {key}"
                    for key in ("name", "port", "type", "tls")
                    if key not in listener
                ]
        elif kind in ("KafkaNodePool", "KafkaTopic"):
            if "strimzi.io/cluster" not in m["metadata"].get("labels", {}):
                problems.append(f"{_name(m)}: no strimzi.io/cluster label")
            if kind == "KafkaNodePool":
                problems += _require(m, "spec.replicas", "spec.roles", "spec.storage.type")
                roles = set(m["spec"].get("roles", []))
                if not roles or not roles <= {"broker", "controller"}:
                    problems.append(f"{_name(m)}: roles {roles}")
            else:
                problems += _require(m, "spec.partitions", "spec.replicas")
        elif kind == "ScaledObject":
            problems += _require(m, "spec.scaleTargetRef.name", "spec.triggers")
            for trigger in m["spec"].get("triggers", []):
                if trigger.get("type") != "kafka":
                    problems.append(f"{_name(m)}: trigger type {trigger.get('type')}")
                meta = trigger.get("metadata", {})
                problems += [
                    f"{_name(m)}: kafka trigger lacks {key}"
                    for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")
                    if not meta.get(key)
                ]
                # KEDA wants every metadata value as a string.
                problems += [
                    f"{_name(m)}: {k} is not a string"
                    for k, v in meta.items()
                    if type(v) is not str
                ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_only_referenced(overlay):
    manifests = render(overlay)
    assert not secrets_with_values(manifests)
    referenced: dict[str, set[str]] = {}
    for where, spec in pod_specs(manifests):
        for c in _containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.setdefault(ref["name"], set()).add(ref["key"])
            for source in c.get("envFrom", []):
                assert "secretRef" not in source, f"{where}: envFrom a whole Secret, use keys"
    assert referenced == {k: v for k, v in OPERATOR_SECRETS.items() if k in referenced}
    assert "minyi-secrets" in referenced
    readme = (K8S / "README.md").read_text("utf-8")
    for name, keys in OPERATOR_SECRETS.items():
        assert name in readme
        for key in keys:
            assert key in readme, f"{name}/{key} is not documented in deploy/k8s/README.md"


def security_problems(manifests: tuple[Manifest, ...]) -> list[str]:
    """Containers not locked down (non-root, read-only root, no capabilities) or unbounded."""
    problems = []
    for where, spec in pod_specs(manifests):
        pod_ctx = spec.get("securityContext", {})
        if pod_ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken")
        for c in _containers(spec):
            ctx = c.get("securityContext", {})
            non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
            uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            label = f"{where} container {c['name']}"
            if non_root is not True or not uid:
                problems.append(f"{label}: runAsNonRoot with a non-zero runAsUser")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{label}: readOnlyRootFilesystem")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{label}: allowPrivilegeEscalation false")
            if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{label}: drop ALL capabilities")
            resources = c.get("resources", {})
            for path in ("requests.cpu", "requests.memory", "limits.memory"):
                section, key = path.split(".")
                if key not in resources.get(section, {}):
                    problems.append(f"{label}: resources.{path}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_locked_down_with_resources(overlay):
    problems = security_problems(render(overlay))
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_secret_value_and_a_writable_root():
    """The two checks above are not vacuous (the overlays define no Secret at all)."""
    leaked = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "x"},
        "data": {"k": "dg=="},
    }
    assert secrets_with_values((leaked,)) == ["Secret/x"]
    manifests = copy.deepcopy(render("prod"))
    (intake,) = [m for m in manifests if _name(m) == "Deployment/intake"]
    intake["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop(
        "readOnlyRootFilesystem"
    )
    assert security_problems(manifests) == [
        "Deployment/intake container intake: readOnlyRootFilesystem"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_probes_a_service_a_pdb_and_waits_for_its_schema(overlay):
    """(Probes on the serving containers only: initContainers and Jobs cannot have them.)"""
    manifests = render(overlay)
    deployments = {m["metadata"]["name"]: m for m in of_kind(manifests, "Deployment")}
    assert set(deployments) == set(SERVICES)
    pdbs = {m["metadata"]["name"] for m in of_kind(manifests, "PodDisruptionBudget")}
    services = {m["metadata"]["name"]: m for m in of_kind(manifests, "Service")}
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert c["args"] == [f"services.{name}", "serve"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert name in pdbs
        assert services[name]["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        (init,) = spec["initContainers"]
        assert init["command"][-1] == name
        assert "wait_for_schema.py" in init["command"][1]
        assert init["image"] == c["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migrations_job_is_named_after_the_release(overlay):
    manifests = render(overlay)
    (job,) = of_kind(manifests, "Job")
    image = {c["image"] for _, spec in pod_specs(manifests) for c in _containers(spec)}
    assert len(image) == 1, image  # one image for everything
    tag = next(iter(image)).rsplit(":", 1)[1]
    assert job["metadata"]["name"] == f"minyi-migrate-{tag}"
    assert tag != "latest", "a release needs an immutable tag (and so a Job of its own)"
    # No hash-suffixed ConfigMap in the Job: its template changes only with its name.
    assert "configMapRef" not in str(job["spec"]["template"])
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    for service in SERVICES:
        assert f"python -m services.{service} migrate" in script


def _secret_env(container: Manifest) -> dict[str, tuple[str, str]]:
    """Variable -> (Secret, key) of a container's secretKeyRef variables."""
    return {
        env["name"]: (ref["name"], ref["key"])
        for env in container.get("env", [])
        if (ref := env.get("valueFrom", {}).get("secretKeyRef"))
    }


def _own_dsn(service: str) -> tuple[str, tuple[str, str]]:
    return f"MINYI_{service.upper()}__DATABASE__URL", (
        "minyi-secrets",
        f"{service.upper()}_DATABASE_URL",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_connects_with_its_own_database_role(overlay):
    """A service's pods get its own DSN only; the administrator's only the Job's provisioning."""
    manifests = render(overlay)
    for d in of_kind(manifests, "Deployment"):
        service = d["metadata"]["name"]
        variable, source = _own_dsn(service)
        for c in _containers(d["spec"]["template"]["spec"]):
            secrets = _secret_env(c)
            assert secrets.get(variable) == source, f"{service}/{c['name']}"
            databases = {k: v for k, v in secrets.items() if "DATABASE" in k or "DATABASE" in v[1]}
            assert databases == {variable: source}, f"{service}/{c['name']}: {databases}"
    (job,) = of_kind(manifests, "Job")
    spec = job["spec"]["template"]["spec"]
    (provision,) = spec["initContainers"]
    assert provision["command"] == ["python", "-m", "shared.cli", "db-provision"]
    own = dict(_own_dsn(s) for s in SERVICES)
    assert _secret_env(provision) == {**own, "DATABASE_URL": ("minyi-db-admin", "DATABASE_URL")}
    (migrate,) = spec["containers"]
    databases = {k: v for k, v in _secret_env(migrate).items() if v[0] != "minyi-bootstrap-admin"}
    assert databases == own  # migrations and seeds as each service's role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_intake_on_cpu_consumers_on_their_groups_lag(overlay):
    manifests = render(overlay)
    config = {
        k: v
        for cm in of_kind(manifests, "ConfigMap")
        if cm["metadata"]["name"].startswith("minyi-config")
        for k, v in cm["data"].items()
    }
    partitions = int(config.get("MINYI_ROUTING__KAFKA__PARTITIONS", KafkaSettings().partitions))
    (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "intake"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    scaled = {m["spec"]["scaleTargetRef"]["name"]: m for m in of_kind(manifests, "ScaledObject")}
    assert set(scaled) == set(CONSUMED)
    kafka = KafkaSettings(bootstrap_servers="unused")
    for service, consumed in CONSUMED.items():
        spec = scaled[service]["spec"]
        triggers = {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in spec["triggers"]
        }
        assert triggers == {(group_id(kafka, service=service, topic=t), t) for t in consumed}
        for t in spec["triggers"]:
            assert t["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
        # More consumers than partitions would sit idle.
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions


def test_prod_runs_kafka_by_strimzi_at_the_code_s_version_with_every_topic():
    manifests = render("prod")
    (kafka,) = of_kind(manifests, "Kafka")
    assert kafka["spec"]["kafka"]["version"] == kafka_version()
    pools = {p["metadata"]["name"]: p for p in of_kind(manifests, "KafkaNodePool")}
    assert {tuple(p["spec"]["roles"]) for p in pools.values()} == {("broker",), ("controller",)}
    assert all(p["spec"]["replicas"] >= 3 for p in pools.values())
    cluster = kafka["metadata"]["name"]
    kafka_topics = {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}
    expected = {*topics.ALL, *(topics.dead_letter(t) for t in topics.ALL)}
    assert set(kafka_topics) == expected
    for t in kafka_topics.values():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert t["spec"]["partitions"] == 12
        assert t["spec"]["replicas"] == 3
        assert int(t["spec"]["config"]["min.insync.replicas"]) == 2
    config = next(
        c for c in of_kind(manifests, "ConfigMap") if "KAFKA_BOOTSTRAP_SERVERS" in c["data"]
    )
    assert config["data"]["KAFKA_BOOTSTRAP_SERVERS"].startswith(f"{cluster}-kafka-bootstrap:")
    # The services reach only this cluster's brokers.
    (egress,) = [
        p["spec"]["egress"]
        for p in of_kind(manifests, "NetworkPolicy")
        if p["metadata"]["name"] == "allow-egress-kafka"
    ]
    peers = [peer["podSelector"]["matchLabels"] for rule in egress for peer in rule["to"]]
    assert peers == [{"strimzi.io/cluster": cluster, "strimzi.io/broker-role": "true"}]
    for service in SERVICES:
        prefix = f"MINYI_{service.upper()}__KAFKA__"
        assert config["data"][f"{prefix}PARTITIONS"] == "12"
        assert config["data"][f"{prefix}REPLICATION_FACTOR"] == "3"


def test_dev_uses_an_external_kafka_by_configuration():
    manifests = render("dev")
    assert not [m for m in manifests if m["apiVersion"].startswith("kafka.strimzi.io/")]
    (config,) = [
        c for c in of_kind(manifests, "ConfigMap") if "KAFKA_BOOTSTRAP_SERVERS" in c["data"]
    ]
    assert re.fullmatch(r"[\w.-]+:\d+(,[\w.-]+:\d+)*", config["data"]["KAFKA_BOOTSTRAP_SERVERS"])


def _ports(rule: Manifest) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_open_only_what_must_talk(overlay):
    manifests = render(overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(manifests, "NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    ingress_ports: set[int] = set()
    egress_ports: set[int] = set()
    for spec in policies.values():
        for rule in spec.get("ingress", []):
            assert rule.get("from"), "ingress from anywhere"
            ingress_ports |= _ports(rule)
        for rule in spec.get("egress", []):
            egress_ports |= _ports(rule)
    # The four http ports (ingress controller, Prometheus) and nothing else.
    assert ingress_ports == {8001, 8002, 8003, 8004}
    assert {53, 5432, 9092, 443} <= egress_ports
    public = policies["allow-ingress-intake-public"]
    assert public["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "intake"}}
    assert _ports(public["ingress"][0]) == {8001}
    # Every workload that talks to Kafka or PostgreSQL carries the label that opens it.
    for d in of_kind(manifests, "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels.get("minyi.io/kafka-client") == "true", _name(d)
        assert labels.get("minyi.io/db-client") == "true", _name(d)
    for job in of_kind(manifests, "Job"):
        assert job["spec"]["template"]["metadata"]["labels"].get("minyi.io/db-client") == "true"


def test_the_wait_for_schema_script_finds_every_service_s_migrations():
    import importlib.util

    path = K8S / "base" / "wait_for_schema.py"
    spec = importlib.util.spec_from_file_location("wait_for_schema", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert tuple(module.SERVICES) == SERVICES
    for service in SERVICES:
        assert sorted(module.migrations_dir(service).glob("*.sql")), service
