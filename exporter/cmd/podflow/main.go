// Command podflow taps the packets that cross a node with netfilter NFLOG,
// names both ends of each connection and serves pair counters to
// Prometheus.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/natinfo"
	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/offload"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// shutdownTimeout bounds the HTTP server's graceful shutdown.
const shutdownTimeout = 5 * time.Second

func main() { os.Exit(run(os.Args[1:])) }

// identitySource names the addresses the packets carry: the static file
// or the Kubernetes informers.
type identitySource interface {
	attribute.Resolver
	// Synced reports whether the source knows the cluster (readiness).
	Synced() bool
	// Run keeps the source up to date until ctx is done.
	Run(ctx context.Context) error
	// Stats reports the state of each watched resource; nil when the
	// source watches nothing.
	Stats() []collector.ResourceStats
}

func run(args []string) int {
	cfg, err := parseConfig(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "podflow: error: %v\n", err)
		return 2
	}
	logger := promslog.New(&cfg.Log)
	logger.Info("starting podflow", "version", version.Info(), "build_context", version.BuildContext())

	// Everything that can fail on bad input fails here, before the
	// nftables table exists.
	if err := web.Validate(*cfg.Web.WebConfigFile); err != nil {
		logger.Error("invalid --web.config.file", "file", *cfg.Web.WebConfigFile, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	table := aggregate.New(aggregate.Config{MaxSeries: cfg.MaxSeries, IdleTimeout: cfg.IdleTimeout})
	ident, err := newIdentity(ctx, cfg, logger, func(ep flow.Endpoint) {
		n := table.Forget(ep)
		logger.Debug("forgot series of a deleted endpoint", "namespace", ep.Namespace, "workload", ep.Workload, "kind", ep.Kind.String(), "pod", ep.Pod, "series", n)
	})
	if err != nil {
		logger.Error("cannot set up the source of identity", "err", err)
		return 1
	}
	listeners, err := listen(cfg.Web)
	if err != nil {
		logger.Error("cannot listen", "address", *cfg.Web.WebListenAddresses, "err", err)
		return 1
	}

	attr := attribute.New(ident, attribute.Config{Node: cfg.Kube.NodeName, Labels: cfg.Labels})
	links := offload.NewLinks()
	if err := links.Refresh(); err != nil {
		logger.Warn("cannot read the interfaces' MTUs; offload super-packets count as one packet until they can be read", "err", err)
	}
	// destination_service: where NFLOG carries no conntrack tuple, the
	// table also logs each connection's first packet before DNAT, and
	// natinfo joins it with the connection's later packets.
	// In connection mode the table still logs each connection's first
	// packet, which counts the connection: natinfo names its Service,
	// and conntrack's original tuple names the Service of its bytes.
	var services *natinfo.Table
	var namer pipeline.ServiceNamer
	if cfg.Labels.DestinationService {
		cfg.Nftables.PreDNAT = true
		services = natinfo.New(0)
		if cfg.Mode == ModeConnection {
			services = natinfo.NewFirstOnly(0)
		}
		namer = services
	}
	conns := newConnMode(cfg, logger)
	pipe := pipeline.New(&pipeline.Config{
		QueueSize:     cfg.QueueSize,
		SampleRate:    cfg.Nftables.SampleRate,
		EvictInterval: evictInterval(cfg.IdleTimeout),
		MTUs:          links,
		Synced:        ident.Synced,
		Services:      namer,
		Conns:         conns.converter(),
	}, attr, table)
	reader := capture.New(cfg.Capture, logger)
	nftTable := nft.New(cfg.Nftables, logger)

	src := sources(cfg, reader, pipe, attr, table, nftTable, ident, conns)
	src.ServiceNaming = serviceNaming(cfg, reader, services)
	selfReg := collector.NewSelfRegistry(&src)
	handler, err := newHandler(logger, collector.NewFlows(table, cfg.Labels), selfReg, readiness(cfg, ident, reader, nftTable, conns))
	if err != nil {
		logger.Error("cannot build the HTTP handler", "err", err)
		return 1
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}

	// The group first: the instance that holds it owns the table, so a
	// second podflow on the node stops here, before it touches the
	// table the first one logs through.
	if err := reader.Bind(ctx, pipe); err != nil {
		closeAll(listeners)
		if ctx.Err() != nil {
			return 0 // stopped while waiting for the group
		}
		logger.Error("cannot bind the NFLOG group; is another podflow running on this node? Stop it or choose another --nflog.group", "group", cfg.Capture.Group, "err", err)
		return 1
	}
	conns.noteAccounting()
	if err := nftTable.Install(); err != nil {
		logger.Error("cannot install the nftables table", "err", err)
		closeAll(listeners)
		return 1
	}
	// After the table: its ct expressions load conntrack in the namespace
	// (a plain host may have none before), and in connection mode it
	// switches accounting on.
	if err := conns.open(cfg, logger); err != nil {
		logger.Error("cannot read conntrack (--capture.mode=connection)", "err", err)
		if derr := nftTable.Delete(); derr != nil {
			logger.Error("cannot delete the nftables table", "err", derr)
		}
		closeAll(listeners)
		return 1
	}

	g, gctx := errgroup.WithContext(ctx)
	captureCtx, stopCapture := context.WithCancel(context.Background())
	defer stopCapture()
	pipeCtx, stopPipe := context.WithCancel(context.Background())
	defer stopPipe()
	captureDone, pipeDone, connsDone := make(chan struct{}), make(chan struct{}), make(chan struct{})

	g.Go(func() error {
		defer close(captureDone)
		if err := reader.Run(captureCtx, pipe); err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer close(pipeDone)
		return pipe.Run(pipeCtx)
	})
	if conns != nil {
		// A second source of flows, stopped with capture.
		g.Go(func() error {
			defer close(connsDone)
			if err := conns.source.Run(captureCtx, pipe.HandleConns); err != nil && captureCtx.Err() == nil {
				return fmt.Errorf("conntrack: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			conns.local.Run(gctx, localRefresh, func(err error) { logger.Warn("cannot read this node's addresses", "err", err) })
			return nil
		})
	} else {
		close(connsDone)
	}
	g.Go(func() error {
		if err := ident.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("identity: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		nftTable.Run(gctx, cfg.ResyncInterval)
		return nil
	})
	g.Go(func() error {
		links.Run(gctx, linksRefresh, func(err error) { logger.Debug("cannot refresh the interfaces' MTUs", "err", err) })
		return nil
	})
	for _, l := range listeners {
		g.Go(func() error {
			if err := web.Serve(l, srv, cfg.Web, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("web server: %w", err)
			}
			return nil
		})
	}
	// Shutdown, in a fixed order: (in connection mode, one last read of
	// the live connections' counters) stop capture, drain the pipeline,
	// delete the table, stop serving.
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down")
		conns.lastDump(logger)
		stopCapture()
		<-captureDone
		<-connsDone
		stopPipe()
		<-pipeDone
		var err error
		if derr := nftTable.Delete(); derr != nil {
			err = fmt.Errorf("deleting the nftables table: %w", derr)
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutting the web server down: %w", serr))
		}
		return err
	})

	logger.Info("podflow is running", "mode", cfg.Mode, "nflog_group", cfg.Capture.Group, "identity", identityKind(cfg))
	if err := g.Wait(); err != nil {
		logger.Error("podflow stopped on an error", "err", err)
		return 1
	}
	logger.Info("podflow stopped")
	return 0
}

// linksRefresh is how often the interfaces' MTUs are read again; a
// packet on an interface not read yet asks for a refresh sooner.
const linksRefresh = time.Minute

// listen opens the listeners first, so that a port in use fails the start
// before the table is installed.
func listen(flags *web.FlagConfig) ([]net.Listener, error) {
	var ls []net.Listener
	for _, addr := range *flags.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll(ls)
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// evictInterval checks for idle series often enough that they go within
// a tenth of the timeout.
func evictInterval(idle time.Duration) time.Duration {
	if idle <= 0 {
		return time.Hour
	}
	return min(max(idle/10, time.Second), time.Minute)
}

func identityKind(cfg *Config) string {
	if cfg.IdentityFile != "" {
		return "file"
	}
	return "kubernetes"
}

// serviceNaming says how this node names the Service a client dialled:
// from NFLOG's conntrack tuple (the glue), from the pre-DNAT log records
// natinfo joins (services, when destination_service is enabled), or not
// at all.
//
// In connection mode, conntrack names the Service of the bytes and
// packets; the first packet's record, which counts the connection, is
// named as in packet mode, and its misses are counted.
func serviceNaming(cfg *Config, reader *capture.Reader, services *natinfo.Table) func() collector.ServiceNamingStats {
	return func() collector.ServiceNamingStats {
		var s collector.ServiceNamingStats
		if services != nil {
			n := services.Stats()
			s.Method, s.Misses, s.Forgotten = collector.NamingLog, n.Missed, n.Forgotten
			if reader.Stats().Conntrack {
				s.Method = collector.NamingGlue
			}
			if cfg.Mode == ModeConnection {
				s.Method = collector.NamingConntrack
			}
		} else if reader.Stats().Conntrack {
			s.Method = collector.NamingGlue
		}
		return s
	}
}

// sources adapts each component's Stats to the collector's.
func sources(cfg *Config, reader *capture.Reader, pipe *pipeline.Pipeline, attr *attribute.Attributor,
	table *aggregate.Table, nftTable *nft.Table, ident identitySource, conns *connMode) collector.Sources {
	return collector.Sources{
		SampleRate: cfg.Nftables.SampleRate,
		Mode:       cfg.Mode,
		Conntrack:  conns.stats(pipe),
		Capture: func() collector.CaptureStats {
			c, p := reader.Stats(), pipe.Stats()
			return collector.CaptureStats{
				Received: c.Received, Lost: c.Lost, Overruns: c.Overruns, BadBatches: c.BadBatches,
				Bound: c.Bound, Conntrack: c.Conntrack,
				Dropped: []collector.Count{{Label: "queue_full", Value: p.QueueFull}, {Label: "malformed", Value: c.Malformed}},
			}
		},
		Decode:      decodeCounts(pipe),
		Attribution: attr.Stats,
		Ignored: func() []collector.Count {
			return []collector.Count{{Label: "identity_not_synced", Value: pipe.Stats().NotSynced}}
		},
		Aggregate: table.Stats,
		Nftables: func() collector.NftablesStats {
			s := nftTable.Stats()
			out := collector.NftablesStats{SyncSuccess: s.SyncsOK, SyncReinstall: s.SyncsReinstall, SyncError: s.SyncsError}
			// In connection mode the table counts the overlay packets it
			// sees (first and untracked ones), conntrack the rest.
			fromConns := conns.overlays()
			seen := map[string]bool{}
			for _, o := range cfg.Nftables.Overlays {
				if !seen[o.Name] {
					seen[o.Name] = true
					out.Overlay = append(out.Overlay, collector.Count{Label: o.Name, Value: s.Overlays[o.Name] + fromConns[o.Name]})
				}
			}
			return out
		},
		Kubernetes: func() []collector.ResourceStats { return ident.Stats() },
	}
}
