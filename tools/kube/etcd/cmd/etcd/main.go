// Wrapper main for etcd; mirrors go.etcd.io/etcd/v3's main.go of the pinned
// release: it hands os.Args to etcdmain.Main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
