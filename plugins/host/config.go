package main

// Config is the `config` block of `driver "host"`. The driver has no
// settings; the empty schema makes the host reject any attribute in the
// block at its file:line:col.
type Config struct{}
