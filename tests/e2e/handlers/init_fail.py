"""Fails at import, as a handler whose model does not load would."""

raise RuntimeError("model could not be loaded on purpose")


def handler(event, context):  # pragma: no cover - never reached
    return {}
