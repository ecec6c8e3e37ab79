"""Layer archive and publish spool on disk (atomic writes, retention that keeps unpublished data)."""
