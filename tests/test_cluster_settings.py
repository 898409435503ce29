"""`[cluster]`: parsed with defaults, refused on SQLite (one line, exit 2), absent: as today."""

from pathlib import Path

import pytest

from supervision.config_cluster import rebound
from supervision.settings import ConfigError, load_settings
from tests.fixtures_cli import cli_env, orderdesk

_BASE = """
[server]
bind = "127.0.0.1:9100"
admin_token = "admin-secret"

[database]
url = "{url}"

[venue]
bind = "127.0.0.1:0"

[[accounts]]
id = "primary"
broker = "paper"
tokens = ["primary-secret"]
"""


def _write(tmp_path: Path, url: str, cluster: str) -> Path:
    path = tmp_path / "orderdesk.toml"
    path.write_text(_BASE.format(url=url) + cluster)
    return path


def test_no_cluster_table_is_a_single_node(tmp_path: Path) -> None:
    path = _write(tmp_path, "postgresql://x@h/db", "")
    assert load_settings(str(path), environ={}).cluster is None


def test_cluster_defaults_and_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "postgresql://x@h/db", '\n[cluster]\nredis_url = "redis://r:6379/0"\n')
    cluster = load_settings(str(path), environ={}).cluster
    assert cluster is not None
    assert cluster.redis_url == "redis://r:6379/0"
    assert cluster.node_id.endswith(":9100") and cluster.advertised == "http://127.0.0.1:9100"
    assert (cluster.lease_s, cluster.renew_s, cluster.margin_s) == (10.0, 3.0, 1.0)
    assert cluster.session_check_s == 1.0
    assert (cluster.weight, cluster.handoffs_per_s, cluster.drain_s) == (1.0, 5.0, 10.0)
    assert cluster.warm_standby is False
    moved = rebound(cluster, "127.0.0.1:9100", "127.0.0.1:9200")  # serve --bind
    assert moved.node_id.endswith(":9200") and moved.advertised == "http://127.0.0.1:9200"
    path = _write(tmp_path, "postgresql://x@h/db", """
[cluster]
redis_url = "redis://r:6379/0"
node_id = "a"
advertised = "http://a.internal:8081"
lease_s = 3
renew_s = 0.5
margin_s = 0.5
key_prefix = "t1"
session_check_s = 0.25
weight = 2.5
handoffs_per_s = 20
drain_s = 3
warm_standby = true
""")
    cluster = load_settings(str(path), environ={}).cluster
    assert cluster is not None
    assert (cluster.node_id, cluster.advertised, cluster.key_prefix) == (
        "a", "http://a.internal:8081", "t1")
    assert rebound(cluster, "127.0.0.1:9100", "127.0.0.1:9200") == cluster  # given: kept
    assert (cluster.lease_s, cluster.renew_s, cluster.margin_s) == (3.0, 0.5, 0.5)
    assert cluster.session_check_s == 0.25
    assert (cluster.weight, cluster.handoffs_per_s, cluster.drain_s) == (2.5, 20.0, 3.0)
    assert cluster.warm_standby is True


@pytest.mark.parametrize(("cluster", "names"), [
    ("", "cluster.redis_url"),
    ('redis_url = "http://r"', "cluster.redis_url"),
    ('redis_url = "redis://r"\nlease_s = 2\nrenew_s = 1.5\nmargin_s = 0.5', "cluster.renew_s"),
    ('redis_url = "redis://r"\nlease_s = 0', "cluster.lease_s"),
    ('redis_url = "redis://r"\nkey_prefix = "{x}"', "cluster.key_prefix"),
    ('redis_url = "redis://r"\nsession_check_s = 0', "cluster.session_check_s"),
    ('redis_url = "redis://r"\nweight = 0', "cluster.weight: must be a number > 0"),
    ('redis_url = "redis://r"\nhandoffs_per_s = "fast"', "cluster.handoffs_per_s"),
    ('redis_url = "redis://r"\ndrain_s = -1', "cluster.drain_s"),
    ('redis_url = "redis://r"\nwarm_standby = "yes"', "cluster.warm_standby"),
])
def test_bad_cluster_values_name_the_key(tmp_path: Path, cluster: str, names: str) -> None:
    path = _write(tmp_path, "postgresql://x@h/db", f"\n[cluster]\n{cluster}\n")
    with pytest.raises(ConfigError, match=names):
        load_settings(str(path), environ={})


def test_cluster_on_sqlite_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "sqlite:///x.db", '\n[cluster]\nredis_url = "redis://r"\n')
    with pytest.raises(ConfigError, match="cluster: needs a Postgres store"):
        load_settings(str(path), environ={})
    # DATABASE_URL overrides the file: the rule applies to the store actually used
    path = _write(tmp_path, "postgresql://x@h/db", '\n[cluster]\nredis_url = "redis://r"\n')
    with pytest.raises(ConfigError, match="SQLite serves one node only"):
        load_settings(str(path), environ={"DATABASE_URL": "sqlite:///y.db"})


async def test_serve_refuses_a_cluster_on_sqlite_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "sqlite:///x.db", '\n[cluster]\nredis_url = "redis://r"\n')
    result = await orderdesk(tmp_path, "serve", "--config", str(path), env=cli_env(tmp_path))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "orderdesk: configuration error: cluster: needs a Postgres store ([database] url "
        "postgresql://...); SQLite serves one node only"
    ]


def test_the_forwarding_secret_comes_from_the_environment(tmp_path: Path) -> None:
    table = '\n[cluster]\nredis_url = "redis://r:6379/0"\n'
    path = _write(tmp_path, "postgresql://x@h/db", table)
    assert load_settings(str(path), environ={}).cluster.secret == ""  # type: ignore[union-attr]
    cluster = load_settings(str(path), environ={"ORDERDESK_CLUSTER_SECRET": "s" * 16}).cluster
    assert cluster is not None and cluster.secret == "s" * 16
    assert "s" * 16 not in repr(cluster)  # never in a log line
    assert cluster.forward_timeout_s == 150.0
    with pytest.raises(ConfigError, match="ORDERDESK_CLUSTER_SECRET: .* at least 16"):
        load_settings(str(path), environ={"ORDERDESK_CLUSTER_SECRET": "short"})
    path = _write(tmp_path, "postgresql://x@h/db",
                  table + 'secret_env = "OUR_SECRET"\nforward_timeout_s = 20\n')
    cluster = load_settings(str(path), environ={"OUR_SECRET": "t" * 20,
                                                "ORDERDESK_CLUSTER_SECRET": "s" * 16}).cluster
    assert cluster is not None and (cluster.secret, cluster.forward_timeout_s) == ("t" * 20, 20)
