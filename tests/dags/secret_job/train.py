"""Proves a rank got each value without printing it: prints a hash of each."""

import hashlib
import os

for name in ("PLAIN_MARKER", "CONN_SECRET", "VAR_SECRET"):
    value = os.environ.get(name)
    digest = hashlib.sha256(value.encode()).hexdigest()[:16] if value else "missing"
    print(f"rank {os.environ['AIRFLOW_TF_RANK']} {name} sha256 {digest}", flush=True)
