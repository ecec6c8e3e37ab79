"""Camera registration onto the plate grid, pixel pitch and flat-field correction."""
