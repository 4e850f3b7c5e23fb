package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/identity"
	"github.com/podflow/podflow/exporter/internal/natinfo"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// report is what a consumer prints for each "report" line on stdin.
type report struct {
	Ready     bool   `json:"ready,omitempty"`
	Received  uint64 `json:"received"`  // packets the reader got
	Counted   uint64 `json:"counted"`   // packets in the aggregation table (podflow) or received (go-nflog)
	Named     uint64 `json:"named"`     // of those, packets counted under a destination_service
	Bytes     uint64 `json:"bytes"`     // bytes in the aggregation table
	Conns     uint64 `json:"conns"`     // connections in the aggregation table
	Lost      uint64 `json:"lost"`      // sequence gaps
	Overruns  uint64 `json:"overruns"`  // ENOBUFS
	QueueFull uint64 `json:"queueFull"` // packets the pipeline's hand-off dropped
	CPUMicros int64  `json:"cpuMicros"` // user+system time of the process

	// Connection mode: the conntrack source's and the pipeline's counters.
	ConnsQueueFull uint64 `json:"connsQueueFull,omitempty"` // conntrack flows the hand-off dropped
	CTEvents       uint64 `json:"ctEvents,omitempty"`       // destroy events received
	CTLostEvents   uint64 `json:"ctLostEvents,omitempty"`   // event socket overruns
	CTDumpErrors   uint64 `json:"ctDumpErrors,omitempty"`   // failed dumps
	CTLost         uint64 `json:"ctLost,omitempty"`         // connections that ended unseen
}

func cpuMicros() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

// benchIdentities names the generator and the sink so that attribution
// finds both sides, as it would for two pods.
const benchIdentities = `endpoints:
  - addresses: [10.245.1.2]
    namespace: bench
    workload: generator
    kind: Deployment
  - addresses: [10.245.2.2]
    namespace: bench
    workload: sink
    kind: Deployment
  - addresses: [10.245.3.10]
    namespace: bench
    workload: sink
    kind: Service
`

// consume reads the group in the current network namespace with podflow's
// capture and pipeline (-mode podflow) or with a bare go-nflog reader
// (-mode gonflog), and answers "report" lines on stdin until EOF.
func consume(args []string) int {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	mode := fs.String("mode", "podflow", "podflow or gonflog")
	group := fs.Uint("group", 100, "NFLOG group")
	qthresh := fs.Uint("qthresh", 16, "queue threshold")
	rcvbuf := fs.Int("rcvbuf", 8<<20, "socket receive buffer")
	services := fs.Bool("services", false, "name Services from first packets logged before DNAT (natinfo), with the destination_service label")
	capMode := fs.String("capture", "packet", "podflow's capture mode: packet (every packet logged) or connection (first packets logged, bytes and packets from conntrack accounting)")
	dumpInterval := fs.Duration("dump-interval", time.Second, "connection mode: how often the conntrack table is dumped")
	ctget := fs.Bool("ctget", false, "look each translated connection up in conntrack over ctnetlink at its first packet (the alternative design, for its cost)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *group > math.MaxUint16 || *qthresh > math.MaxUint16 {
		fmt.Fprintln(os.Stderr, "consume: -group and -qthresh must fit 16 bits")
		return 2
	}
	if *capMode != "packet" && *capMode != "connection" {
		fmt.Fprintln(os.Stderr, "consume: -capture must be packet or connection")
		return 2
	}
	grp, qt := uint16(*group), uint32(*qthresh) //nolint:gosec // checked above
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var snap func() report
	switch *mode {
	case "podflow":
		ids, err := identity.Parse([]byte(benchIdentities), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			return 1
		}
		table := aggregate.New(aggregate.Config{MaxSeries: 100000, IdleTimeout: 10 * time.Minute})
		var pcfg pipeline.Config
		var acfg attribute.Config
		if *services {
			pcfg.Services = natinfo.New(0)
			acfg.Labels.DestinationService = true
		}
		if *capMode == "connection" {
			if err := connectionPipeline(&pcfg); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
				return 1
			}
		}
		pipe := pipeline.New(&pcfg, attribute.New(ids, acfg), table)
		go func() { _ = pipe.Run(ctx) }()
		var conns *connMode
		if *capMode == "connection" {
			// Its first dump only takes a baseline: ready after it, so
			// that every connection of the run counts from zero.
			if conns, err = startConnection(ctx, pipe, *dumpInterval); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
				return 1
			}
		}
		cfg := capture.DefaultConfig()
		cfg.Group = grp
		cfg.QueueThreshold = qt
		cfg.ReadBuffer = *rcvbuf
		r := capture.New(cfg, nil)
		var h capture.Handler = pipe
		var getter *ctGetter
		if *ctget {
			if getter, err = newCTGetter(pipe); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
				return 1
			}
			h = getter
		}
		go func() { _ = r.Run(ctx, h) }()
		for !r.Stats().Bound {
			time.Sleep(10 * time.Millisecond)
		}
		var series []aggregate.Series
		snap = func() report {
			s := r.Stats()
			series = table.Snapshot(series[:0])
			var counted, named, bytes, nconns uint64
			for i := range series {
				n := series[i].Packets[0] + series[i].Packets[1]
				counted += n
				bytes += series[i].Bytes[0] + series[i].Bytes[1]
				nconns += series[i].Connections
				if series[i].Key.DstService != "" {
					named += n
				}
			}
			if getter != nil {
				named = getter.named.Load() // connections conntrack named
			}
			rep := report{Received: s.Received, Counted: counted, Named: named, Bytes: bytes, Conns: nconns,
				Lost: s.Lost, Overruns: s.Overruns, QueueFull: pipe.Stats().QueueFull}
			if conns != nil {
				conns.fill(&rep)
			}
			return rep
		}
	case "gonflog":
		var received, lost, overruns atomic.Uint64
		var next uint32
		var haveSeq bool
		nf, err := nflog.Open(&nflog.Config{Group: grp, Copymode: nflog.CopyPacket, Bufsize: 128, Flags: nflog.FlagSeq, QThresh: qt, Timeout: 10})
		if err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			return 1
		}
		defer nf.Close()
		if err := setRcvBufForce(nf.Con, *rcvbuf); err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			return 1
		}
		err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
			if a.Seq != nil {
				if haveSeq && *a.Seq != next {
					if gap := *a.Seq - next; gap < 1<<31 {
						lost.Add(uint64(gap))
					}
				}
				haveSeq, next = true, *a.Seq+1
			}
			received.Add(1)
			return 0
		}, func(err error) int {
			if errors.Is(err, syscall.ENOBUFS) {
				overruns.Add(1)
			}
			return 0
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			return 1
		}
		snap = func() report {
			n := received.Load()
			return report{Received: n, Counted: n, Lost: lost.Load(), Overruns: overruns.Load()}
		}
	default:
		fmt.Fprintln(os.Stderr, "consume: -mode must be podflow or gonflog")
		return 2
	}

	enc := json.NewEncoder(os.Stdout)
	_ = enc.Encode(report{Ready: true})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		r := snap()
		r.CPUMicros = cpuMicros()
		_ = enc.Encode(r)
	}
	return 0
}

func setRcvBufForce(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	})
	if err != nil {
		return err
	}
	return serr
}
