"""doctor's findings for a person at 2 AM (``text``) or for a script (``as_json``). Pure: strings in, strings out.

Text: one block per group in decision-tree order (``findings.GROUPS``), headed by what the group
checks; inside it the worst first, one line per finding: ``ERROR|WARN|ok  subject  message — fix: ...``;
then one summary line. Colour (ANSI) only when the caller says the terminal takes it.
"""

from __future__ import annotations

import json

from faregate.doctor.findings import GROUPS, Finding, exit_code, ordered

LABELS = {"error": "ERROR", "warning": "WARN", "ok": "ok"}
COLOURS = {"error": "\x1b[1;31m", "warning": "\x1b[33m", "ok": "\x1b[32m"}
BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
SUBJECT_WIDTH = 34  # subjects longer than this push their message right instead of widening every line


def summary(findings: list[Finding]) -> dict[str, int]:
    return {severity: sum(f.severity == severity for f in findings) for severity in ("error", "warning", "ok")}


def as_json(findings: list[Finding]) -> str:
    """``{"findings": [...], "summary": {"error": n, "warning": n, "ok": n}, "exit_code": n}``."""
    data = {"findings": [f.as_dict() for f in ordered(findings)], "summary": summary(findings), "exit_code": exit_code(findings)}
    return json.dumps(data, indent=2)


def text(findings: list[Finding], *, colour: bool = False, quiet: bool = False, title: str = "") -> str:
    """The report; ``quiet`` leaves out the ok lines (the summary still counts them)."""

    def paint(style: str, words: str) -> str:
        return f"{style}{words}{RESET}" if colour else words

    lines = [paint(BOLD, title), ""] if title else []
    shown = [f for f in ordered(findings) if not (quiet and f.severity == "ok")]
    for group in [*GROUPS, *sorted({f.group for f in shown} - set(GROUPS))]:
        block = [f for f in shown if f.group == group]
        if not block:
            continue
        lines.append(paint(BOLD, f"{group}: {GROUPS.get(group, group)}"))
        width = min(SUBJECT_WIDTH, max(len(f.subject) for f in block))
        for f in block:
            fix = f" — fix: {f.fix}" if f.fix and f.severity != "ok" else ""
            label = paint(COLOURS[f.severity], f"{LABELS[f.severity]:<5}")
            lines.append(f"  {label}  {f.subject:<{width}}  {f.message}{paint(DIM, fix) if fix else ''}")
        lines.append("")
    counts = summary(findings)
    code = exit_code(findings)
    verdict = {0: "all ok", 1: "errors found", 2: "warnings only"}[code]
    lines.append(
        paint(COLOURS["error" if code == 1 else "warning" if code == 2 else "ok"], f"{verdict}:")
        + f" {counts['error']} error(s), {counts['warning']} warning(s), {counts['ok']} ok (exit {code})"
    )
    return "\n".join(lines)
