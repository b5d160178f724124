"""Shared helpers for the Python interop suite: a pushwarden server per test module, HS256 tokens,
POST /send, and bounded waits."""
