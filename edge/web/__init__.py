"""`lpbf-edge serve` and the service's `web:` section: a read-only local web view of the box's archive."""
