package agent

import (
	"github.com/coreos/go-systemd/v22/daemon"
)

// Notify tells systemd the agent's state when it runs as a Type=notify
// service ($NOTIFY_SOCKET set): daemon.SdNotifyReady once the API serves,
// daemon.SdNotifyReloading while a reload runs, daemon.SdNotifyStopping
// when it stops. Without $NOTIFY_SOCKET it does nothing.
func (a *Agent) Notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		a.log.Warn("notifying systemd", "state", state, "error", err)
	}
}
