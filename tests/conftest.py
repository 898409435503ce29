"""Shared fixtures live in one module per area, registered here."""

pytest_plugins = [
    "tests.fixtures_venue",
    "tests.fixtures_store",
    "tests.fixtures_web",
    "tests.fixtures_service",
    "tests.fixtures_cli",
    "tests.fixtures_orders",
    "tests.fixtures_desk",
    "tests.fixtures_webhooks",
    "tests.fixtures_admin",
    "tests.fixtures_cluster",
]
