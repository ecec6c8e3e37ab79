"""Stand-in `cuda.bindings` (tests only): only `runtime` exists."""
