// Package oracle answers connectedUsersIndicator by brute force from the
// events alone, as the contract words it, for tests of the engine and of the
// whole service. It uses no engine or presence.State code: engine.Filter and
// engine.Indicator only as plain data.
package oracle
