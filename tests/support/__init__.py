"""Shared test support code: stub servers and helpers."""
