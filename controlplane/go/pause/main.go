// Command pause is the local node's pod sandbox process (what registry.k8s.io/pause is
// elsewhere): it holds the pod's namespaces, reaps orphans and exits on SIGINT or SIGTERM.
// No registry is reachable here, so localkube builds it and imports it into the runtime.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
