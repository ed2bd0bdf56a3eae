package etcdstore

// ParseForTest exposes parse to the external tests.
func ParseForTest(raw []byte) (any, error) { return parse(raw) }
