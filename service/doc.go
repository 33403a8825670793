// Package service assembles presenced: the engine, the snapshots, the NATS
// side (embedded server or external), the ingester and the HTTP API, with
// their timers and an orderly shutdown. cmd/presenced only parses flags and
// calls Run; tests start the real service with Start on random ports.
//
//	cfg := service.Defaults()
//	cfg.HTTPAddr, cfg.NATSListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:-1", dir
//	svc, err := service.Start(ctx, cfg, logger)
//	... svc.HTTPAddr(), svc.NATSURL() ...
//	cancel(); err = svc.Wait()
package service
