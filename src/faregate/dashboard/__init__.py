"""The dashboard: server-rendered pages at /ui, served by every worker (``faregate.dashboard.app``).

A layer of its own directly below ``faregate.server`` (which routes /ui to ``app.handle``); it reads
the gateway and the store directly and never imports ``faregate.server``. How a page is added:
/work/notes/ui_conventions.md and the docstring of ``app``.
"""
