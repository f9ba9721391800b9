"""Test suite for rayeval."""
