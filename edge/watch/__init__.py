"""`lpbf-edge watch`: the reference MQTT subscriber of the box's MQTT contract (docs/mqtt.md)."""
