"""Layer archive and publish spool on disk with atomic writes."""
