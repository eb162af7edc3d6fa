"""Served tasks of Hugging Face / sentence-transformers directories (build side).

:mod:`infra.tasks.detect` decides what a saved directory serves (classification, embeddings,
token classification, feature extraction) as the library that saved it would;
:mod:`infra.tasks.heads` holds the torch wrappers that put pooling and normalization into
the exported graph; :mod:`infra.tasks.embedding_gate` is the accuracy gate's figures for
embeddings (per-text cosine and top-10 retrieval agreement).
"""
