"""Uses a package the venv does not have: it must come from the job's pip_packages."""

import importlib.metadata

import pyjokes

print(f"pyjokes {importlib.metadata.version('pyjokes')} from {pyjokes.__file__}", flush=True)
