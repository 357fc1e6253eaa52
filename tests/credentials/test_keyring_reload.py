"""After a reload the old secret is unreachable from the gateway: not in the keyring, the pools,
the pipeline, the controller, the upstream client or any cache they reference."""

from __future__ import annotations

import gc
import os
import types
from pathlib import Path
from typing import Any

from faregate.gateway import Gateway
from faregate.types import Secret

OLD = "sk-old-secret-0f1e2d3c4b5a"
NEW = "sk-new-secret-9a8b7c6d5e4f"


def reachable_secrets(root: object, needle: str) -> list[str]:
    """Objects reachable from ``root`` that hold ``needle`` (strings, bytes, Secrets)."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    hits: list[str] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if needle in obj:
                hits.append(repr(obj)[:60])
            continue
        if isinstance(obj, bytes | bytearray):
            if needle.encode() in obj:
                hits.append(repr(obj)[:60])
            continue
        if isinstance(obj, Secret):
            if obj.reveal() == needle:
                hits.append(repr(obj))
            continue
        if isinstance(obj, type):
            continue
        if isinstance(obj, types.ModuleType) and not obj.__name__.startswith("faregate"):
            continue  # faregate's own module globals are searched (no module-level caches of keys); others are not ours
        if isinstance(obj, types.FunctionType | types.BuiltinFunctionType) and not (obj.__module__ or "").startswith("faregate"):
            continue  # a library function's globals lead to the whole interpreter (this test module included)
        stack.extend(gc.get_referents(obj))
    return hits


def test_old_secret_is_unreachable_after_reload(tmp_path: Path, monkeypatch: object) -> None:
    (tmp_path / "key.txt").write_text(OLD)
    config = tmp_path / "faregate.yaml"
    config.write_text(
        """
server:
  auth: none
state:
  database: sqlite:///STATE/state.db
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{id: main, key_file: key.txt}, {id: spare, key: "${SPARE_KEY}"}]
models:
  m:
    - {provider: up, model: gpt-4o-mini}
""".replace("STATE", str(tmp_path))
    )
    os.environ["SPARE_KEY"] = "sk-spare-key-unchanged"
    try:
        gw = Gateway(config)
        pool = gw.keyring.current.pools["up"]
        chosen = [pool.choose(0.0) for _ in range(4)]  # use the keys: counters and last-used get written
        pool.reject(chosen[0], "credential rejected (401 invalid_api_key)")  # type: ignore[arg-type]
        assert reachable_secrets(gw, OLD), "the search must find the secret while it is in use"
        (tmp_path / "key.txt").write_text(NEW)
        gw.control.reload_local()
        assert reachable_secrets(gw, OLD) == []
        assert reachable_secrets(gw, NEW)
        assert gw.keyring.current.pools["up"].states[0].rejected is None  # rejection lasts until the reload
    finally:
        del os.environ["SPARE_KEY"]
