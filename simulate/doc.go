// Package simulate publishes a live simulation of a contact centre's agents,
// so that someone trying presenced sees its indicators move
// (presenced -simulate N).
//
// Run keeps a model of each agent and publishes, every tick, one batch of the
// events that move it: most agents log in over the first few ticks with a
// full profile (role, groups, project, routing groups, statuses, chat
// capacity) and a few stay out; then agents change status, conversations
// start within the chat capacity and end, agents log out and come back, and
// quiet agents send heartbeats. The events agree with the model: currentSlots
// never exceeds maxSlots, and the chat is BUSY when full. A batch that is not
// acknowledged is dropped from the model too, and the next tick carries on
// from what was published.
//
//	err := simulate.Run(ctx, simulate.Config{Agents: 200, Publisher: pub})
//
// Run uses its Config from one goroutine; several Runs may go concurrently
// with distinct Rand values.
package simulate
