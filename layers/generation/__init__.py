"""Generative models: the decoding loop (:mod:`.engine`, onnxruntime-genai), text as
transformers makes it with deltas that never split a character (:mod:`.text`), chat
templates (:mod:`.chat`), and the request options both protocols share (:mod:`.options`).
Imported only for a model whose manifest says ``"task": "generation"``."""
