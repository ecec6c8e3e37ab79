"""MQTT client, topics and payloads."""
