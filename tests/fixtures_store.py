"""Fixtures for the store: a throwaway Postgres database per session, SQLite per test."""
