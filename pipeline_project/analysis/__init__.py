"""MIR analysis of stems, music-theory analysis of chord sequences, per-hit drum features."""
