# The few commands people run. CI runs .ci/run.
.PHONY: run test bench lint fuzz

run:
	go run ./cmd/presenced -simulate 200

# bench/ is a module of its own: test and lint run in both. The allocation
# tests skip under -race: test runs them again without, with every benchmark
# once.
test:
	go test -race ./...
	cd bench && go test -race ./...
	go test -count=1 -run 'Allocs$$' -bench . -benchtime 1x ./...

# The micro-benchmarks; the scenarios are: cd bench && go run ./cmd/presencebench -h
bench:
	go test -run XXX -bench . -benchmem ./presence/ ./engine/ ./api/

lint:
	go vet ./...
	cd bench && go vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

fuzz:
	go test -run XXX -fuzz FuzzDecode -fuzztime 60s ./presence/
	go test -run XXX -fuzz FuzzReadSnapshot -fuzztime 60s ./engine/
