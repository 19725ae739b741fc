"""The benches' result tables, in Markdown, so they read as text and paste into an issue.

    print(table(["method", "msg/s"], [["raw pika", "22746"], ["relay", "3990"]], align="lr"))

`align` has a letter per column: `l` left, `r` right (numbers; `---:` in the rule). Each
column is as wide as its widest cell, so a new row or a longer name needs no width changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    body = [list(row) for row in rows]
    if any(len(row) != len(header) for row in body) or len(align) != len(header):
        raise ValueError("every row, and align, needs one entry per column")
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(cells, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        "-" * (width + 2) if side == "l" else "-" * (width + 1) + ":"
        for width, side in zip(widths, align, strict=True)
    )
    return "\n".join([line(header), f"|{rule}|", *(line(row) for row in body)])
