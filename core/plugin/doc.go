// Package plugin is sandnet's plugin manager. It finds a plugin's binary,
// verifies its pinned checksum, launches it with go-plugin (gRPC only,
// AutoMTLS, without the host's environment, with a start timeout),
// negotiates the protocol version, checks the plugin's Info, configures it,
// watches its health, restarts it with backoff when it dies (and tells the
// owner so state can be replayed), and stops every plugin on Shutdown.
//
// No plugin outlives the agent: every plugin process is started with
// Pdeathsig=SIGKILL from one OS thread that lives as long as the agent
// (Pdeathsig fires when the *thread* that forked the child exits, and Go
// retires threads whose goroutine exits while locked to them), so a
// crashed or killed agent takes its plugins with it; a clean shutdown
// asks each plugin to exit and kills what is left.
package plugin
