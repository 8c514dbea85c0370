"""Metadata shapes shared by the Dagster layer."""

from __future__ import annotations

import dagster as dg


def markdown_table(header: list[str], rows: list[list]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
