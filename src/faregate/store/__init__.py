"""Shared state between workers and instances: the control bus and the worker registry."""
