"""Pure parts of tools/stack.py: no processes, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import stack


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(
    ("name", "port", "controller"), [("dev", 19092, 19093), ("test", 29092, 29093)]
)
def test_server_properties_single_node_kraft(name: str, port: int, controller: int) -> None:
    profile = stack.PROFILES[name]
    props = _props(stack.render_server_properties(profile, Path("/data/kafka")))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{controller}"
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
    )
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
    assert props["log.dirs"] == "/data/kafka"
    assert props["num.partitions"] == "3"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"


def test_chaos_broker_has_a_listener_behind_toxiproxy() -> None:
    """The services reach the chaos broker only through Toxiproxy (31095 -> 31094): it
    advertises the proxy's port on the PROXIED listener; the harness keeps 31092."""
    profile = stack.PROFILES["chaos"]
    props = _props(stack.render_server_properties(profile, Path("/data/kafka")))

    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:31092,PROXIED://127.0.0.1:31094,CONTROLLER://127.0.0.1:31093"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:31092,PROXIED://127.0.0.1:31095"
    )
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["controller.listener.names"] == "CONTROLLER"
    broker_port, proxy_port = stack.KAFKA_PROXIED_PORTS["chaos"]
    others = [p.kafka_port for p in stack.PROFILES.values()] + [
        p.controller_port for p in stack.PROFILES.values()
    ]
    assert not {broker_port, proxy_port} & {*others, *stack.SERVICES.values()}


def test_profiles_do_not_share_ports_or_dirs() -> None:
    dev, test = stack.PROFILES["dev"], stack.PROFILES["test"]
    dev_ports = {dev.kafka_port, dev.controller_port, dev.pg_port}
    test_ports = {test.kafka_port, test.controller_port, test.pg_port}
    assert not dev_ports & test_ports
    assert not (dev_ports | test_ports) & set(stack.SERVICES.values())
    assert dev.dir != test.dir
    assert dev.dir.parent == test.dir.parent == stack.ROOT / ".stack"
    assert test.database_url == "postgresql://postgres@127.0.0.1:25432/minyi"
    assert dev.bootstrap_servers == "127.0.0.1:19092"


def test_env_file_round_trip() -> None:
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:25432/minyi",
    }
    text = stack.render_env(values)
    assert text == (
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092\n"
        "DATABASE_URL=postgresql://postgres@127.0.0.1:25432/minyi\n"
    )
    assert stack.parse_env("# comment\n\n" + text) == values


def test_env_file_rejects_shell_unsafe_values() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        stack.render_env({"DATABASE_URL": "postgresql://u:p$w@h/db"})


def test_postgres_settings_per_profile() -> None:
    test_settings = stack.postgres_settings(stack.PROFILES["test"])
    dev_settings = stack.postgres_settings(stack.PROFILES["dev"])
    assert "fsync=off" in test_settings
    assert "max_connections=1000" in test_settings
    assert "fsync=on" in dev_settings
    assert "fsync=off" not in dev_settings


def test_kafka_cluster_id_format() -> None:
    ids = {stack.kafka_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_every_fixed_port_is_below_the_ephemeral_range():
    """A fixed port inside 32768-60999 may be held by some process's outgoing connection."""
    from bench import chaos

    ports = [
        p
        for profile in stack.PROFILES.values()
        for p in (profile.kafka_port, profile.controller_port, profile.pg_port)
    ]
    ports += [p for pair in stack.KAFKA_PROXIED_PORTS.values() for p in pair]
    ports += [chaos.TOXIPROXY_API_PORT, chaos.PG_PROXY_PORT]
    assert all(p < 32768 for p in ports), sorted(p for p in ports if p >= 32768)


# --- slice "secrets": the local stack's development settings --------------------------------


def test_a_local_stack_gets_the_dev_profile_and_a_signing_key_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make up's env: the dev profile with the README's accounts, and a random key made once
    per .stack/<profile> (kept across restarts, private, different for another stack)."""
    monkeypatch.setattr(stack, "STACK_DIR", tmp_path)
    dev, test = stack.PROFILES["dev"], stack.PROFILES["test"]
    first = stack.dev_settings(dev)
    assert first["MINYI_PROFILE"] == "dev"
    assert first["MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS"] == "true"
    key = first["MINYI_AUTH_SECRET"]
    assert len(bytes.fromhex(key)) == 32
    assert stack.dev_settings(dev)["MINYI_AUTH_SECRET"] == key  # a restart keeps it
    assert (tmp_path / "dev" / "auth-secret").stat().st_mode & 0o777 == 0o600
    assert stack.dev_settings(test)["MINYI_AUTH_SECRET"] != key
    assert stack.parse_env(stack.render_env(first)) == first  # safe for the env file
