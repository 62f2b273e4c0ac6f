"""What a finished job hands back: per-epoch progress lines, metrics history, the curves picture.
Airflow-side helpers (not operators, not node code)."""
