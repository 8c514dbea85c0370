"""Anonymized, validated Parquet datasets: keyed ids, coarse values, privacy audit, group splits."""
