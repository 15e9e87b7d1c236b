# tutti: two commands.
#   make run    install what is missing, build, start tutti on 127.0.0.1:8080
#   make test   install what is missing, build with ASan+UBSan, run every test
# (and make bench: the benchmarks, with figures; it needs the test packages too)

RELEASE := build/release
ASAN    := build/asan
JOBS    ?= $(shell nproc)

.PHONY: run test bench deps test-deps build clean

run: deps build
	$(RELEASE)/tutti --host 127.0.0.1 --port 8080 --engine memory --web-root $(CURDIR)/web

build:
	cmake -S . -B $(RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(RELEASE) -j $(JOBS)

test: test-deps
	CC=clang cmake -S . -B $(ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTUTTI_SANITIZE=ON -DTUTTI_FUZZ=ON >/dev/null
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ctest --output-on-failure -j $(JOBS) --timeout 300

bench: test-deps build
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti SSEBENCH=$(CURDIR)/$(RELEASE)/ssebench bench/sse_fanout.sh
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti SSEBENCH=$(CURDIR)/$(RELEASE)/ssebench bench/ws_fanout.sh
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti SSEBENCH=$(CURDIR)/$(RELEASE)/ssebench bench/redis_fanout.sh
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti JAMBENCH=$(CURDIR)/$(RELEASE)/jambench bench/jam_relay.sh
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti bench/render.sh
	TUTTI_BIN=$(CURDIR)/$(RELEASE)/tutti SSEBENCH=$(CURDIR)/$(RELEASE)/ssebench bench/compare.sh

deps:
	scripts/deps.sh build

test-deps:
	scripts/deps.sh test
	cd tests && npm ci --no-audit --no-fund --loglevel=error
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error

clean:
	rm -rf build
