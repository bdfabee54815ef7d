# The README's commands. Everything real happens in CMake and scripts/.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=
export CCACHE_DIR ?= $(CURDIR)/.ccache

.PHONY: setup build test test-unit test-asan test-node run bench clean format

setup:
	@scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Unit + golden + integration tests (ctest), then the node reference tests, then the
# sanitizer build of the unit tests.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-node
	$(MAKE) --no-print-directory test-asan

test-node:
	MIXSERVE_BIN=$(CURDIR)/$(BUILD)/mixserve node --test tests/node/ tests/e2e/

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMIXSERVE_SANITIZE=ON \
	  -DMIXSERVE_CUDA=OFF $(CMAKE_FLAGS)

test-asan: setup $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE slow

DEMO_MODEL ?= $(BUILD)/models/tiny
$(DEMO_MODEL)/config.json: | build
	$(BUILD)/mixserve make-model --preset tiny --out $(DEMO_MODEL)

# Serves the tiny demo model on http://127.0.0.1:$(PORT) (OpenAI API) until Ctrl-C.
PORT ?= 8000
run: build $(DEMO_MODEL)/config.json
	$(BUILD)/mixserve serve --model $(DEMO_MODEL) --device cpu --served-model-name tiny --port $(PORT)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.h' 'src/*.cu' 'src/*.cuh' 'tests/*.cpp')
