# The few commands people run. CI runs .ci/run.
.PHONY: run test bench lint fuzz

run:
	go run ./cmd/presenced -simulate 200

test:
	go test -race ./...

bench:
	go test -run XXX -bench . -benchmem ./presence/ ./engine/ ./api/

lint:
	go vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

fuzz:
	go test -run XXX -fuzz FuzzDecode -fuzztime 60s ./presence/
	go test -run XXX -fuzz FuzzReadSnapshot -fuzztime 60s ./engine/
