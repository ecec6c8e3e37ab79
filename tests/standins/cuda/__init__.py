"""Stand-in `cuda` package (tests only): see tests/standins/README.md."""
