package resolver

// Outcome is what a resolver did with a query, for Metrics.
type Outcome uint8

const (
	// OutcomeContainer: answered from the Backend (a container's name,
	// alias or address; NODATA for a type it has no data of).
	OutcomeContainer Outcome = iota
	// OutcomeForwarded: answered with an upstream's answer.
	OutcomeForwarded
	// OutcomeCached: answered from the forwarding cache.
	OutcomeCached
	// OutcomeNXDomain: answered NXDOMAIN without asking upstream (every
	// network internal, or a single-label name; see Forwarding).
	OutcomeNXDomain
	// OutcomeRefused: answered REFUSED because MaxInflight forwards were
	// waiting.
	OutcomeRefused
	// OutcomeFailed: answered SERVFAIL because no upstream answered
	// usefully in time (or there was none).
	OutcomeFailed
	// OutcomeInvalid: a query the resolver does not serve, answered
	// FORMERR, NOTIMP, REFUSED (class, zone transfer) or BADVERS.
	OutcomeInvalid

	// NumOutcomes counts the outcomes above.
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"container", "forwarded", "cached", "nxdomain", "refused", "failed", "invalid"}

// String is the outcome's label value: container, forwarded, cached,
// nxdomain, refused, failed or invalid.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Metrics receives what resolvers do. Its methods are called on every
// query, concurrently: they must cost no more than an atomic add.
type Metrics interface {
	// Query counts a query answered with rcode (the answer's, for a
	// forwarded or cached one). Dropped queries and forwards cut short by
	// Stop are not counted.
	Query(o Outcome, rcode int)
	// ForwardStarted counts a query sent upstream; ForwardDone follows
	// when it ends, whatever its outcome.
	ForwardStarted()
	ForwardDone()
}

type nopMetrics struct{}

func (nopMetrics) Query(Outcome, int) {}
func (nopMetrics) ForwardStarted()    {}
func (nopMetrics) ForwardDone()       {}
