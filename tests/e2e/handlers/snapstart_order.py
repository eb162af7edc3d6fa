"""Records the order in which the runtime ran init, the SnapStart hooks and the invoke."""

from __future__ import annotations

import json

from snapshot_restore_py import register_after_restore, register_before_snapshot

EVENTS = ["init"]
register_before_snapshot(lambda: EVENTS.append("before_snapshot"))
register_after_restore(lambda: EVENTS.append("after_restore"))


def handler(event, context):
    EVENTS.append("invoke")
    return {"statusCode": 200, "body": json.dumps(EVENTS)}
