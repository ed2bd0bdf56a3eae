package storetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/store"
)

// TestReference runs the suite against the reference store, directly,
// through the gRPC adapters, and shared between subtests under prefixes.
func TestReference(t *testing.T) {
	t.Run("Direct", func(t *testing.T) {
		Run(t, func(*testing.T) (store.Store, string) { return newMemStore(""), "" })
	})
	t.Run("InProcess", func(t *testing.T) {
		Run(t, func(t *testing.T) (store.Store, string) {
			c, stop, err := store.InProcess(sdk.Info{Name: "mem"}, newMemStore(""))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return c, ""
		})
	})
	t.Run("Shared", func(t *testing.T) {
		m := newMemStore("")
		m.Put(t.Context(), "outside", []byte("must survive"))
		Run(t, func(t *testing.T) (store.Store, string) { return m, Prefix(t) })
		for _, k := range m.keys() {
			if k != "outside" && !strings.HasPrefix(k, "storetest/") {
				t.Errorf("the suite wrote %q, outside the prefixes it was given", k)
			}
		}
		if _, err := m.Get(t.Context(), "outside"); err != nil {
			t.Errorf("key outside the prefixes: %v", err)
		}
	})
}

func TestPrefix(t *testing.T) {
	a, b := Prefix(t), Prefix(t)
	if a == b || strings.HasPrefix(a, b) || strings.HasPrefix(b, a) || !strings.HasSuffix(a, "/") {
		t.Fatalf("Prefix gave %q and %q, want two distinct prefixes, neither a prefix of the other, ending in /", a, b)
	}
}

// mutantEnv names the defect TestMutantTarget gives the reference store.
const mutantEnv = "STORETEST_MUTANT"

// TestMutants shows that the suite fails stores with known defects: each
// runs the subtest that must catch it in a child test process.
func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for _, tc := range []struct{ mutant, subtest string }{
		{"lostUpdate", "ConcurrentCAS"},
		{"existsAsConflict", "AtomicPut"},
		{"plainErrors", "GetMissing"},
		{"partialTxn", "TxnAllOrNothing"},
		{"perKeyIndex", "IndexGrows"},
		{"unsortedList", "List"},
		{"emptyListNotFound", "List"},
		{"siblingEvents", "Watch"},
		{"silentDeleteTree", "Watch"},
		{"noReady", "Watch"},
		{"watchNeverCloses", "WatchCancel"},
		{"blockingWatch", "WatchSlowConsumer"},
	} {
		t.Run(tc.mutant, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutantTarget$/^"+tc.subtest+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+tc.mutant)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store with defect %s:\n%s", tc.mutant, out)
			}
			if want := "--- FAIL: TestMutantTarget/" + tc.subtest; !strings.Contains(string(out), want) {
				t.Fatalf("defect %s: child output lacks %q:\n%s", tc.mutant, want, out)
			}
		})
	}
}

// TestMutantTarget is run by TestMutants.
func TestMutantTarget(t *testing.T) {
	mutant := os.Getenv(mutantEnv)
	if mutant == "" {
		t.Skip("run by TestMutants")
	}
	Run(t, func(*testing.T) (store.Store, string) { return newMemStore(mutant), "" })
}
