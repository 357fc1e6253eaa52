"""A started worker freezes what start-up built out of the garbage collector's reach (issue 13).

A full collection walks every tracked object: ~130k live after a worker's start-up, ~105 ms of CPU in
one loop turn, a stall of every running stream (measured with py-spy and a loop-turn ticker). Frozen
objects are skipped by every later collection. Counted, not timed: gc.get_freeze_count()."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from faregate.gateway import Gateway


def test_a_started_worker_has_frozen_its_start_up_objects(tmp_path: Path) -> None:
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
    - {{provider: local, model: mock-small}}
"""
    )

    async def start_and_count() -> int:
        gw = Gateway(config)
        await gw.start()
        try:
            return gc.get_freeze_count()
        finally:
            await gw.stop()

    gc.unfreeze()
    try:
        frozen = asyncio.run(start_and_count())
    finally:
        gc.unfreeze()  # this test process is no worker
    assert frozen > 10_000, frozen  # the modules, the generation and the schema at least
