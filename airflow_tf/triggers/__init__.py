"""Deferrable waits: the job trigger polls node handles without holding a worker slot."""
