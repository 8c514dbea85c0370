"""Dagster assets, one module per stage. Thin: read inputs, call domain code, write outputs, report metadata."""
