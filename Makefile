# pbxpulse: the front door. `make run` and `make test` are the two commands
# the README promises work on a fresh machine.

MODULES := pkg services/collector services/projector services/gateway services/logtailer services/mediabridge test
SERVICES := collector projector gateway logtailer mediabridge
GO ?= go
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_VTPROTO_VERSION := v0.6.0

.PHONY: all build run test test-unit test-e2e bench proto lint fmt vet tidy clean

all: build

## build: compile every service into bin/
build:
	@mkdir -p bin
	@for s in $(SERVICES); do echo "go build ./services/$$s"; $(GO) build -o bin/$$s ./services/$$s || exit 1; done
	$(GO) build -o bin/pbxpulse-dev ./test/cmd/pbxpulse-dev
	$(GO) build -o bin/pbxsim ./test/cmd/pbxsim

## run: the whole system on this machine; prints the panel URL
run: build
	./bin/pbxpulse-dev

## test: unit and integration tests of every module, then the end-to-end suites
test: vet
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) test -race -count=1 -timeout 15m ./...) || exit 1; done

## bench: benchmarks with their baselines (see docs/benchmarks.md)
bench:
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...) || exit 1; done

## proto: regenerate pkg/pbxpulsev1 from proto/ (protoc from Debian's protobuf-compiler)
proto:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_VTPROTO_VERSION)
	PATH="$(GOBIN_DIR):$$PATH" protoc -I proto --go_out=pkg --go_opt=module=github.com/pbxpulse/pbxpulse/pkg proto/pbxpulse/v1/*.proto
	@# The projector decodes events and encodes views with vtprotobuf's code (see projection.DecodeEvent).
	PATH="$(GOBIN_DIR):$$PATH" protoc -I proto --go-vtproto_out=pkg --go-vtproto_opt=module=github.com/pbxpulse/pbxpulse/pkg,features=marshal+unmarshal+unmarshal_unsafe+size proto/pbxpulse/v1/events.proto proto/pbxpulse/v1/views.proto

## vet: go vet and gofmt over every module
vet:
	@test -z "$$(gofmt -l $(MODULES))" || { echo "gofmt needed:"; gofmt -l $(MODULES); exit 1; }
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

lint: vet

fmt:
	gofmt -w $(MODULES)

tidy:
	@for m in $(MODULES); do (cd $$m && GOWORK=off GONOSUMDB=github.com/staskobzar,github.com/CyCoreSystems $(GO) mod tidy) || exit 1; done

clean:
	rm -rf bin .dev
