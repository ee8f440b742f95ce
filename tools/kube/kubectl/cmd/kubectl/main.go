// Wrapper main for kubectl of the pinned k8s.io/kubernetes release (the same command tree
// as upstream's cmd/kubectl; credential plugins registered).
package main

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth" // exec/oidc credential plugins
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
