# The few commands people run. CI runs .ci/run.
.PHONY: run test bench lint fuzz

run:
	go run ./cmd/presenced -simulate 200

# bench/ is a module of its own: each target runs in both.
test:
	go test -race ./...
	cd bench && go test -race ./...

bench:
	go test -run XXX -bench . -benchmem ./presence/ ./engine/ ./api/

lint:
	go vet ./...
	cd bench && go vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

fuzz:
	go test -run XXX -fuzz FuzzDecode -fuzztime 60s ./presence/
	go test -run XXX -fuzz FuzzReadSnapshot -fuzztime 60s ./engine/
