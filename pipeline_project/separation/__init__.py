"""Source separation into drums, bass, other and vocals: Demucs, or a documented DSP fallback."""
