"""`lpbf-edge watch`: the reference MQTT subscriber of the box's topic contract (DESIGN.md section 4)."""
