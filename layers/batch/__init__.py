"""Batch inference over S3 objects: one object in, exactly one result or error record out.

``s3://<bucket>/<model>/in/<key>`` → ``<model>/out/<key>.jsonl`` (one line per request) or
``<model>/errors/<key>.json`` (why not). :mod:`layers.batch.job` runs one object;
:mod:`layers.batch.service` wires it to Powertools (events, idempotency, partial batch
failures) for ``functions/batch/handler.py``.
"""
