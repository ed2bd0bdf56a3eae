package controller

import "github.com/sandnet/sandnet/core/osl"

// unmountDefault removes the host-mode default key a test made.
func unmountDefault(key string) error { return osl.Remove(key) }
