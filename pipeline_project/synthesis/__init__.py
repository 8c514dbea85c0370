"""Score sources, generated grooves and FluidSynth rendering with perfectly aligned labels."""
