package controller

import (
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/sandbox"
)

// The controller announces what a user's request (or the stub reaper)
// changed in sandboxes and their endpoints, through Config.OnEvent: it
// alone knows every endpoint a delete removes, the network each belongs
// to by ID and name, and the container behind an endpoint whatever name
// the endpoint answers to. A rollback of a failed request and the
// start-time repairs announce nothing: what they undo was never
// announced.

// publish hands e to Config.OnEvent, when set.
func (c *Controller) publish(e events.Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(e)
	}
}

// announceConnect publishes endpoint.connect for endpoint e of op's
// sandbox.
func (c *Controller) announceConnect(op *sandboxOp, e sandbox.Endpoint) {
	c.publish(events.Event{Type: events.TypeConnect, NetworkID: e.NetworkID, Network: e.NetworkName,
		SandboxID: op.sb.ID(), Container: op.sb.ContainerID(), EndpointID: e.ID})
}

// announceDisconnect publishes endpoint.disconnect for endpoint e, which
// op's sandbox no longer has.
func (c *Controller) announceDisconnect(op *sandboxOp, e sandbox.Endpoint) {
	c.publish(events.Event{Type: events.TypeDisconnect, NetworkID: e.NetworkID, Network: e.NetworkName,
		SandboxID: op.sb.ID(), Container: op.sb.ContainerID(), EndpointID: e.ID})
}

// announceCreate publishes sandbox.create for op's sandbox, then
// endpoint.connect for each endpoint it has.
func (c *Controller) announceCreate(op *sandboxOp) {
	c.publish(events.Event{Type: events.TypeSandboxCreate, SandboxID: op.sb.ID(), Container: op.sb.ContainerID()})
	for _, e := range op.sb.Endpoints() {
		c.announceConnect(op, e)
	}
}

// announceDelete returns what a delete calls once it removed endpoints:
// it publishes endpoint.disconnect for each endpoint removed and, when
// the sandbox is gone too, sandbox.delete with why as its message. A
// delete that fails part-way announces the endpoints it did remove (a
// retry announces the rest).
func (c *Controller) announceDelete(why string) func(*sandboxOp, []sandbox.Endpoint, bool) {
	return func(op *sandboxOp, removed []sandbox.Endpoint, gone bool) {
		for _, e := range removed {
			c.announceDisconnect(op, e)
		}
		if gone {
			c.publish(events.Event{Type: events.TypeSandboxDelete, SandboxID: op.sb.ID(), Container: op.sb.ContainerID(), Message: why})
		}
	}
}
