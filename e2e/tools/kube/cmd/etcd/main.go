// Command etcd is etcd's own server main, built from the go.etcd.io/etcd
// server module at the version kube-apiserver's go.mod pins, so that the
// e2e control plane needs no distribution package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
