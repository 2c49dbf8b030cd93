"""Helpers for tests and benchmarks that need the real embedded stack."""
