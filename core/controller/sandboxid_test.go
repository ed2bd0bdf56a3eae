package controller

import (
	"context"
	"errors"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

// TestSandboxBySandboxID: a command that takes a container takes the
// sandbox's ID too, whole or its first 12 characters, as `sandbox ls`
// prints it, when no container has that name; a container's own name
// comes first.
func TestSandboxBySandboxID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb := e.sandbox("c1")
	for _, ref := range []string{sb.ID, sb.ID[:12]} {
		got, err := e.c.SandboxByContainer(ctx, ref)
		if err != nil || got.ContainerID != "c1" {
			t.Fatalf("sandbox by its ID %s: %+v, %v; want c1's", ref, got, err)
		}
	}
	if _, err := e.c.SandboxByContainer(ctx, sb.ID[:11]); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("11 characters of the ID: %v, want not found", err)
	}
	named := e.sandbox(sb.ID[:12]) // a container named as c1's sandbox ID starts
	if got, err := e.c.SandboxByContainer(ctx, sb.ID[:12]); err != nil || got.ID != named.ID {
		t.Fatalf("a container's name before a sandbox ID: %+v, %v", got, err)
	}
	if err := e.c.DeleteSandbox(ctx, sb.ID[:13]); err != nil {
		t.Fatalf("deleting by the sandbox ID: %v", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "c1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("c1 after its delete by sandbox ID: %v", err)
	}
}
