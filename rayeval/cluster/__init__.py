"""Connecting to a Ray cluster, or starting a local one."""

from rayeval.cluster.connect import connect

__all__ = ["connect"]
