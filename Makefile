# sandnet build. `make run` starts the agent with examples/config.hcl and
# the embedded bolt store; `make test` installs what the tests need and runs
# them all.

GO       ?= go
# The agent's version: the nearest v* tag (an sdk/v* tag is the SDK's own).
VERSION  ?= $(shell git describe --tags --match 'v[0-9]*' --always --dirty 2>/dev/null || echo dev)
BIN      := bin
PLUGIN_BIN := $(BIN)/plugins
LDFLAGS  := -X github.com/sandnet/sandnet/core/agent.Version=$(VERSION)
PLUGIN_LDFLAGS := -X main.version=$(VERSION)

# kind-name:source directory, one per plugin binary.
PLUGINS := driver-none:plugins/none driver-host:plugins/host driver-bridge:plugins/bridge driver-overlay:plugins/overlay store-bolt:plugins/store-bolt store-consul:plugins/store-consul

# Pinned generators for `make proto`.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

TEST_FLAGS ?= -race -count=1 -timeout 30m

# EXAMPLES are the out-of-tree-style plugins under examples/plugins, each a
# Go module of its own requiring only the SDK (and its real dependency):
# kind-name:directory, built into bin/plugins by `make examples`.
EXAMPLES := driver-macvlan:examples/plugins/macvlan store-etcd:examples/plugins/store-etcd

# MODULES are the Go modules of this repository: the host, the SDK that
# plugin authors require on its own, and the examples. `go test ./...`
# does not descend into another module, so test, test-unit and lint visit
# each.
MODULES := . sdk $(foreach e,$(EXAMPLES),$(word 2,$(subst :, ,$(e))))

.PHONY: all build plugins examples run test test-unit deps proto lint bench clean consul install

all: build

build: $(BIN)/sandnet $(BIN)/cni/sandnet plugins

$(BIN)/sandnet: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/host

# The CNI plugin: a binary of its own, so that a runtime's exec per call
# loads little; static (no cgo), so that the exec loads no dynamic linker
# and libc (about 4 ms of CPU per call on the reference VM).
$(BIN)/cni/sandnet: FORCE
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/host/cni

plugins: FORCE
	@mkdir -p $(PLUGIN_BIN)
	@for p in $(PLUGINS); do \
		name=$${p%%:*}; dir=$${p#*:}; \
		echo "$(GO) build -o $(PLUGIN_BIN)/sandnet-$$name ./$$dir"; \
		$(GO) build -ldflags '$(PLUGIN_LDFLAGS)' -o $(PLUGIN_BIN)/sandnet-$$name ./$$dir || exit 1; \
	done

# examples builds the example plugins, each from its own module, into
# bin/plugins beside the in-tree ones.
examples: FORCE
	@mkdir -p $(PLUGIN_BIN)
	@for p in $(EXAMPLES); do \
		name=$${p%%:*}; dir=$${p#*:}; \
		echo "(cd $$dir && $(GO) build -o $(CURDIR)/$(PLUGIN_BIN)/sandnet-$$name .)"; \
		(cd $$dir && $(GO) build -ldflags '$(PLUGIN_LDFLAGS)' -o $(CURDIR)/$(PLUGIN_BIN)/sandnet-$$name .) || exit 1; \
	done

run: build
	$(BIN)/sandnet agent -config examples/config.hcl

# test installs the Debian packages the tests use (when run as root on a
# machine that lacks them), builds every binary and runs every test; root
# tests put themselves in throwaway network namespaces.
test: deps build examples
	@for m in $(MODULES); do echo "(cd $$m && $(GO) test $(TEST_FLAGS) ./...)"; (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || exit 1; done

# test-unit runs the tests that need neither root nor extra packages.
test-unit:
	@for m in $(MODULES); do echo "(cd $$m && $(GO) test -count=1 ./...)"; (cd $$m && $(GO) test -count=1 ./...) || exit 1; done

deps:
	@bash .ci/deps

# consul builds the Consul agent that store-consul's tests start, at the
# version .ci/consul/go.mod pins (1.14.11, the last MPL-2.0 release), into a
# cache outside the tree. It does nothing when the binary is there (a
# build takes about 5 minutes).
CONSUL_VERSION := 1.14.11
CONSUL_BIN     := $(HOME)/.cache/sandnet/consul-$(CONSUL_VERSION)

consul: $(CONSUL_BIN)

$(CONSUL_BIN):
	@mkdir -p $(dir $@)
	cd .ci/consul && GOWORK=off $(GO) build -mod=readonly -buildvcs=false -o $@.tmp github.com/hashicorp/consul
	@mv $@.tmp $@

proto:
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(CURDIR)/$(BIN)/tools:$$PATH protoc -I sdk/proto \
		--go_out=paths=source_relative:sdk/proto \
		--go-grpc_out=paths=source_relative:sdk/proto sdk/proto/*.proto

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do echo "(cd $$m && $(GO) vet ./...)"; (cd $$m && $(GO) vet ./...) || exit 1; done
	@# The attach and create paths stay short named steps (docs/architecture.md).
	$(GO) run ./.ci/funclen -max 80 core/controller core/sandbox core/nspool plugins/bridge

# bench prints ratios against peers measured in the same run: the plugin
# boundary, attach/detach against CNI's bridge plugin and a netlink floor,
# the embedded resolver against dnsmasq, and `podman run` on a sandnet
# network against podman's own CNI bridge network. The programs that
# create network state run in a throwaway namespace of their own.
bench: deps build
	$(GO) build -o $(BIN)/bench-attach ./bench/attach
	$(GO) build -o $(BIN)/bench-dns ./bench/dns
	$(GO) build -o $(BIN)/bench-podman ./bench/podman
	$(GO) test -run '^$$' -bench . -benchtime 3000x ./core/plugin/
	$(GO) test -run '^$$' -bench . -benchtime 200x ./core/controller/
	$(GO) test -run '^$$' -bench . -benchtime 3000x ./plugins/store-bolt/... ./plugins/store-consul/...
	$(GO) test -run '^$$' -bench Overlay -benchtime 1x ./cmd/host/
	unshare --net --mount --propagation private $(BIN)/bench-attach
	unshare --net --mount --propagation private $(BIN)/bench-dns
	unshare --net --mount --propagation private $(BIN)/bench-podman

# install puts the agent in $(PREFIX)/bin, the plugins in
# $(PREFIX)/lib/sandnet/plugins (set plugin_dir to it when PREFIX is not
# /usr), the CNI plugin, when built, in $(CNI_BIN_DIR), and the systemd
# unit in $(PREFIX)/lib/systemd/system; DESTDIR stages it all elsewhere.
PREFIX      ?= /usr/local
CNI_BIN_DIR ?= $(PREFIX)/lib/cni
UNIT_DIR    ?= $(PREFIX)/lib/systemd/system

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/sandnet/plugins $(DESTDIR)$(UNIT_DIR)
	install -m 0755 $(BIN)/sandnet $(DESTDIR)$(PREFIX)/bin/sandnet
	install -m 0755 $(PLUGIN_BIN)/sandnet-* $(DESTDIR)$(PREFIX)/lib/sandnet/plugins/
	if [ -x $(BIN)/cni/sandnet ]; then install -d $(DESTDIR)$(CNI_BIN_DIR) && install -m 0755 $(BIN)/cni/sandnet $(DESTDIR)$(CNI_BIN_DIR)/sandnet; fi
	sed 's|@PREFIX@|$(PREFIX)|g' contrib/systemd/sandnet.service > $(DESTDIR)$(UNIT_DIR)/sandnet.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/sandnet.service

clean:
	rm -rf $(BIN)

FORCE:
