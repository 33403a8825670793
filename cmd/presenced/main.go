package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/service"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return token(args[1:], stdout, stderr)
	}
	cfg := service.Defaults()
	fs := flag.NewFlagSet("presenced", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := service.ParseFlags(&cfg, fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "presenced:", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(stderr, "presenced: -log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg, logger); err != nil {
		logger.Error("presenced stopped", "err", err)
		return 1
	}
	logger.Info("presenced stopped")
	return 0
}

// token prints a new random token for tenant, and the line that admits it
// in the -tokens file (only the token's SHA-256 is stored there).
func token(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: presenced token TENANT")
		return 2
	}
	tok := api.NewToken()
	line, err := api.TokenLine(args[0], tok)
	if err != nil {
		fmt.Fprintln(stderr, "presenced:", err)
		return 2
	}
	fmt.Fprintf(stdout, "token: %s\nadd this line to the tokens file:\n%s\n", tok, line)
	return 0
}
