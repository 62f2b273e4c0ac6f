.PHONY: setup demo test unit bench
setup:
	./scripts/setup.sh
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
unit:
	./scripts/test.sh tests/unit
bench:
	./scripts/bench.sh
