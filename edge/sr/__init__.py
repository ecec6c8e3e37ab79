"""Super-resolution runtime: schedules, samplers, runners, tiling, the SuperResolver."""
