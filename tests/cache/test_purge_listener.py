"""A purge another worker announced (``CachesPurged`` -> ``Controller.reload_local(purge=True)``)
empties this worker's in-process response cache, on a real Gateway (not started: no I/O needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faregate.cache.stores import MemoryStore
from faregate.gateway import Gateway


def test_a_purge_reload_drops_this_workers_response_cache(tmp_path: Path) -> None:
    config = tmp_path / "faregate.yaml"
    config.write_text(
        f"""
server:
  auth: none
state:
  database: sqlite:///{tmp_path}/state.db
providers:
  local: {{type: mock}}
models:
  m:
    deployments: [{{provider: local, model: mock-small}}]
    cache: {{ttl: 60}}
"""
    )
    gw = Gateway(config)
    store = gw.cache
    assert isinstance(store, MemoryStore)
    asyncio.run(store.put("k", b"v", ttl=60))
    gw.control.reload_local()  # a plain reload keeps the cache (the key holds no generation)
    assert len(store) == 1
    gw.control.reload_local(purge=True)
    assert len(store) == 0
