"""Degradations that still sound like music, each fully described by a record that rebuilds it exactly."""
