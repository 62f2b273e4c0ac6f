.PHONY: setup demo test unit package dist bench
setup:
	./scripts/setup.sh
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
unit:
	./scripts/test.sh tests/unit
package:
	./scripts/test.sh tests/package
dist:
	./scripts/setup.sh && .venv/bin/python -P -m build --outdir build/dist .
bench:
	./scripts/bench.sh
