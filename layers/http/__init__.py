"""The HTTP binding of the data plane: API Gateway HTTP API (payload 2.0) events in, Lambda
responses out. Content types, base64, size limits and error → status live here, once, for
the Lambda API function, the SageMaker server and the local stack:

- :mod:`.apigw`: an event → :class:`~layers.messages.Request`, a
  :class:`~layers.messages.Reply` → the Lambda response; errors → their replies;
- :mod:`.fastpath`: the routes marked ``fast`` (inference) served without the resolver;
- :mod:`.resolver`: every route of the table on Powertools' resolver (405s, JSON 404);
- :mod:`.binding`: the entry point both share, with the per-request metrics;
- :mod:`.events`: the one builder of HTTP API 2.0 events (local gateway, SageMaker sizes).
"""
