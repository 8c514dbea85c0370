"""Metadata shapes shared by the Dagster layer."""

from __future__ import annotations

import dagster as dg


def png_markdown(alt: str, png: bytes) -> dg.MetadataValue:
    """A PNG shown inline in the UI's metadata."""
    import base64

    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def markdown_table(header: list[str], rows: list[list]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
