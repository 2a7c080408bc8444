package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/netns"
)

// TestNodeSimulation is a Kubernetes node in miniature: two "pods" (namespaces)
// on a Linux bridge in a "node" namespace, a server in one, clients in the
// other, and the sniffer in the node on -i any, as the DaemonSet runs it. Each
// packet crosses the node three times (the client pod's veth, the bridge, the
// server pod's veth) and -i any sees it on each, yet every exchange must come
// out exactly once: the copies carry the same sequence numbers, so reassembly
// keeps the first and drops the rest as retransmissions.
func TestNodeSimulation(t *testing.T) {
	needLive(t)
	node := netns.New(t, "node")
	client, server := netns.New(t, "pcli"), netns.New(t, "psrv")
	node.MustIP(t, "link", "add", "cbr0", "type", "bridge")
	node.MustIP(t, "link", "set", "cbr0", "up")
	for _, p := range []struct {
		ns       *netns.NS
		hostSide string
		addr     string
	}{{client, "vethcli", "10.244.1.10/24"}, {server, "vethsrv", "10.244.1.20/24"}} {
		netns.Veth(t, p.ns, "eth0", node, p.hostSide)
		node.MustIP(t, "link", "set", p.hostSide, "master", "cbr0")
		p.ns.AddAddr(t, "eth0", p.addr)
	}
	testServer(t, server, ":8000")
	client.WaitReachable(t, "10.244.1.20:8000")
	s := startSniffer(t, node, "-i", "any", "-p", "8000")

	c := newClient(client)
	var calls []call
	for i := 0; i < 30; i++ {
		method, body := "GET", 0
		if i%3 == 0 {
			method, body = "POST", 300+i
		}
		calls = append(calls, c.do(context.Background(), method, fmt.Sprintf("http://10.244.1.20:8000/pods/%d?size=%d", i, 100*i), body))
	}
	calls = append(calls, curlCalls(t, client, "http://10.244.1.20:8000/curl/a?size=10", "http://10.244.1.20:8000/curl/b?status=404")...)
	settle()
	s.stop(t)

	evs := s.events(t)
	require.NotEmpty(t, evs)
	matchCalls(t, evs, calls, 0)
	assert.Len(t, evs, len(calls), "every exchange exactly once")
	for _, ev := range evs {
		assert.Equal(t, "10.244.1.20:8000", ev.Metadata.Server)
	}
}
