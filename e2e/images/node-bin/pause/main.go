// pause is the pod sandbox process for the lab's kind nodes: it holds the
// pod's namespaces open, reaps any zombie it inherits (it is PID 1 of the
// pod when the PID namespace is shared) and exits on SIGINT/SIGTERM.
// A static Go stand-in for registry.k8s.io/pause, which is C.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (cni-migrate lab)")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		switch s {
		case syscall.SIGCHLD:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		default:
			os.Exit(0)
		}
	}
}
