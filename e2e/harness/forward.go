package harness

import (
	"context"
	"io"
	"net"
	"sync"
)

// Forward listens on listenAddr in the root namespace (a loopback address)
// and relays every connection to target inside ns, so that a browser on the
// host reaches the sandbox without a route into it.
func (e *Env) Forward(listenAddr string, ns *NetNS, target string) (net.Addr, error) {
	l, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	e.AddCleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := ns.Dial(context.Background(), "tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return l.Addr(), nil
}
