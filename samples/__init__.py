"""The sample catalog's torch models (``models.yaml`` names them as ``samples.digits:mlp``).

Weights are produced by ``scripts/make_samples.py`` (run by ``make samples``) into
``samples/generated/``; nothing binary is committed.
"""
