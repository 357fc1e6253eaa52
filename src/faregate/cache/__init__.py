"""The response cache (README, "Response cache"): opt-in per public model (``models.NAME.cache.ttl``).

One module per job: ``key`` (the canonical request, the tenant, Cache-Control), ``entry`` (what is
stored: the answer in the neutral model, and the client's bytes of a plain answer), ``replay`` (an
entry as the client's reply or stream), ``stores`` (the bounded in-process LRU, and the choice of
store), ``redis_store`` (Redis, when ``state.redis`` is set). The server's hooks are in
``faregate.server.cached``.
"""
