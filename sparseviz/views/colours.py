"""Colours shared by the Plotly charts (app) and the Pillow figures (CLI), so neither imports the other."""

# One colour per obscuring/leading kind, used for markers and bars alike.
# Saturated so that a 16 px ring reads on fur, sky and skin alike (and on a projector).
KIND_COLOURS = {"obscuring": "#00a2ff", "leading": "#ff2d2d", "both": "#ff00e6", "neither": "#ffd400"}
RING_COLOUR = "#00e5ff"  # cyan rings show on both light and dark photo regions
