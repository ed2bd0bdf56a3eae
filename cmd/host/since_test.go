package main

import (
	"strings"
	"testing"
	"time"
)

// TestSinceFlag: `events --since` takes a duration back from now, an RFC
// 3339 time or a date, as docker events does, and says what it wants
// otherwise.
func TestSinceFlag(t *testing.T) {
	var f sinceFlag
	before := time.Now()
	err := f.Set("10m")
	after := time.Now()
	if err != nil || f.t.Before(before.Add(-10*time.Minute)) || f.t.After(after.Add(-10*time.Minute)) {
		t.Fatalf("10m: %v, %s (now %s)", err, f.t, before)
	}
	for in, want := range map[string]time.Time{
		"2026-12-06T21:00:00Z":      time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC),
		"2026-12-06T22:00:00+01:00": time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC),
		"2026-12-06":                time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
	} {
		if err := f.Set(in); err != nil || !f.t.Equal(want) {
			t.Errorf("%s: %v, %s; want %s", in, err, f.t, want)
		}
	}
	for in, says := range map[string]string{"-5m": "must not be negative", "yesterday": "neither a duration"} {
		if err := f.Set(in); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want an error saying %q", in, err, says)
		}
	}
}
