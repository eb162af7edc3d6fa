"""Test-only Lambda handlers: they exercise the local stack's machinery (crash, init error,
timeouts, response shapes) through the same awslambdaric path the real handlers use."""
