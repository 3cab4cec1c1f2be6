"""Plumbing the API and the worker share: settings, AWS clients and errors, retry, logs."""
