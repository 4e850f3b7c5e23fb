package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// Config is every setting of the daemon, parsed from the flags.
type Config struct {
	Web *web.FlagConfig
	Log promslog.Config

	Capture capture.Config
	// Mode is --capture.mode: ModePacket or ModeConnection.
	Mode string
	// DumpInterval is how often connection mode reads the counters of
	// live connections from conntrack.
	DumpInterval time.Duration
	// Nftables is the table's configuration; Group, SnapLen,
	// QueueThreshold and SampleRate repeat the capture settings.
	Nftables       nft.Config
	ResyncInterval time.Duration
	QueueSize      int

	MaxSeries     int
	IdleTimeout   time.Duration
	DeletionGrace time.Duration
	Labels        attribute.Labels

	// IdentityFile names the static identities; when set, Kubernetes is
	// not used.
	IdentityFile string
	NetworksFile string
	Kube         KubeConfig

	// Raw flag values, checked and converted by Validate.
	nflogBufferSize, nflogReadBuffer units.Base2Bytes
	nflogQueueThreshold              uint16
	overlays, labels                 []string
	podCIDRs, serviceCIDRs           []string
}

// The capture modes of --capture.mode.
const (
	// ModePacket logs every packet that crosses the node and counts it.
	ModePacket = collector.ModePacket
	// ModeConnection logs only what starts a connection (and untracked
	// or invalid packets) and counts bytes and packets from conntrack's
	// per-connection accounting.
	ModeConnection = collector.ModeConnection
)

// DefaultDumpInterval is the default of --conntrack.dump-interval.
const DefaultDumpInterval = 10 * time.Second

// KubeConfig is the Kubernetes side of the configuration.
type KubeConfig struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// NodeName is the node this instance runs on (NODE_NAME from the
	// downward API): the reporter of its own pods' connections.
	NodeName               string
	PodCIDRs, ServiceCIDRs []netip.Prefix
}

// newApp returns the command line of the daemon, filling cfg when parsed.
func newApp(cfg *Config) *kingpin.Application {
	app := kingpin.New("podflow", "Counts the traffic between the pods of a Kubernetes cluster (netfilter NFLOG) and serves it to Prometheus.")
	app.Version(version.Print("podflow"))
	app.HelpFlag.Short('h')

	cfg.Web = kingpinflag.AddFlags(app, ":9810")
	cfg.Log = promslog.Config{}
	promslogflag.AddFlags(app, &cfg.Log)

	// Every default comes from the package that uses the setting.
	nflog, table := capture.DefaultConfig(), nft.DefaultConfig()
	app.Flag("nflog.group", "NFLOG group the nftables rules log to and podflow reads.").Default(fmt.Sprint(table.Group)).Uint16Var(&cfg.Capture.Group)
	app.Flag("nflog.snaplen", "Bytes of each packet the kernel copies, from the L3 header (headers only).").Default(fmt.Sprint(table.SnapLen)).Uint32Var(&cfg.Capture.SnapLen)
	app.Flag("nflog.queue-threshold", "Packets the kernel batches into one netlink message.").Default(fmt.Sprint(table.QueueThreshold)).Uint16Var(&cfg.nflogQueueThreshold)
	app.Flag("nflog.buffer-size", "The kernel's NFLOG batch buffer (at most 128KiB).").Default(units.Base2Bytes(nflog.BufferSize).String()).BytesVar(&cfg.nflogBufferSize)
	app.Flag("nflog.flush-timeout", "How long the kernel holds a partial batch.").Default(nflog.FlushTimeout.String()).DurationVar(&cfg.Capture.FlushTimeout)
	app.Flag("nflog.read-buffer", "Receive buffer of the NFLOG socket.").Default(units.Base2Bytes(nflog.ReadBuffer).String()).BytesVar(&cfg.nflogReadBuffer)
	app.Flag("capture.mode", "packet: log and count every packet; connection: log only what starts a connection and count bytes and packets from conntrack's accounting (see docs/architecture.md).").
		Default(ModePacket).EnumVar(&cfg.Mode, ModePacket, ModeConnection)
	app.Flag("conntrack.dump-interval", "Connection mode: how often the counters of live connections are read from conntrack (ended connections are counted when they end).").
		Default(DefaultDumpInterval.String()).DurationVar(&cfg.DumpInterval)
	app.Flag("capture.sample-rate", "Log one packet in N in the kernel (in connection mode also count one connection in N); counters are scaled by N.").Default(fmt.Sprint(table.SampleRate)).Uint32Var(&cfg.Nftables.SampleRate)
	app.Flag("capture.overlay", "Encapsulation between nodes excluded from the pair counters (repeatable): [name=]udp:PORT, tcp:PORT, proto:N or vxlan, geneve, wireguard, ipip, sit, gre, esp.").
		Default(nft.DefaultOverlaySpecs()...).StringsVar(&cfg.overlays)
	app.Flag("capture.queue-size", "Batches of 64 packets that may wait between the reader and the aggregator; beyond, batches are dropped and counted.").
		Default(fmt.Sprint(pipeline.DefaultQueueSize)).IntVar(&cfg.QueueSize)
	app.Flag("nftables.resync-interval", "How often the nftables table is checked and rebuilt if changed or missing.").Default(nft.DefaultResyncInterval.String()).DurationVar(&cfg.ResyncInterval)
	app.Flag("metrics.max-series", "Cap on flow series; packets of new series beyond it are dropped and counted (0: no cap).").Default("100000").IntVar(&cfg.MaxSeries)
	app.Flag("metrics.idle-timeout", "Remove a flow series after this long without a packet (0: never).").Default("10m").DurationVar(&cfg.IdleTimeout)
	app.Flag("metrics.deletion-grace", "Remove the series of a deleted pod, Service or node after this long; until then a deleted pod's addresses still name it, unless another object claims them. In connection mode, must exceed twice --conntrack.dump-interval.").Default("1m").DurationVar(&cfg.DeletionGrace)
	app.Flag("metrics.labels", "Opt-in label (repeatable): source_pod, destination_pod, destination_service.").StringsVar(&cfg.labels)
	app.Flag("identity.file", "YAML file of static identities (addresses and CIDRs to endpoints); when set, Kubernetes is not used.").StringVar(&cfg.IdentityFile)
	app.Flag("networks.file", "YAML file of named CIDR networks for addresses outside the cluster.").StringVar(&cfg.NetworksFile)
	app.Flag("kube.kubeconfig", "Kubeconfig file; empty: in-cluster configuration.").StringVar(&cfg.Kube.Kubeconfig)
	app.Flag("kube.node-name", "Name of the node podflow runs on.").Envar("NODE_NAME").StringVar(&cfg.Kube.NodeName)
	app.Flag("kube.pod-cidr", "Pod CIDR of the cluster (repeatable); default: the nodes' spec.podCIDRs.").StringsVar(&cfg.podCIDRs)
	app.Flag("kube.service-cidr", "Service CIDR of the cluster (repeatable).").StringsVar(&cfg.serviceCIDRs)
	return app
}

// parseConfig parses args (without the program name) into a Config and
// validates it.
func parseConfig(args []string) (*Config, error) {
	cfg := &Config{}
	app := newApp(cfg)
	if _, err := app.Parse(args); err != nil {
		return nil, fmt.Errorf("%w (see --help)", nameFlag(app, args, err))
	}
	err := cfg.Validate()
	return cfg, err
}

// Validate checks every setting and fills the derived fields. It reads
// nothing from the kernel.
func (c *Config) Validate() error {
	var errs []error
	if c.nflogBufferSize < 0 || c.nflogBufferSize > 1<<31 {
		errs = append(errs, fmt.Errorf("--nflog.buffer-size %v: out of range", c.nflogBufferSize))
	} else {
		c.Capture.BufferSize = uint32(c.nflogBufferSize) //nolint:gosec // checked just above
	}
	c.Capture.ReadBuffer = int(c.nflogReadBuffer)
	if c.nflogReadBuffer <= 0 || c.nflogReadBuffer > 1<<31 {
		errs = append(errs, fmt.Errorf("--nflog.read-buffer %v: want 1B to 2GiB", c.nflogReadBuffer))
	}
	c.Capture.QueueThreshold = uint32(c.nflogQueueThreshold)
	if c.nflogQueueThreshold == 0 {
		errs = append(errs, errors.New("--nflog.queue-threshold must be at least 1"))
	}
	if err := c.Capture.Validate(); err != nil {
		errs = append(errs, err)
	}

	c.Nftables.Group = c.Capture.Group
	c.Nftables.SnapLen = c.Capture.SnapLen
	c.Nftables.QueueThreshold = c.nflogQueueThreshold
	c.Nftables.Overlays = c.Nftables.Overlays[:0]
	for _, s := range c.overlays {
		o, err := nft.ParseOverlay(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--capture.overlay %q: %w", s, err))
			continue
		}
		c.Nftables.Overlays = append(c.Nftables.Overlays, o)
	}
	if c.Nftables.SampleRate == 0 {
		errs = append(errs, errors.New("--capture.sample-rate must be at least 1"))
	} else if err := c.Nftables.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("--capture.queue-size %d: must be at least 1", c.QueueSize))
	}
	c.Nftables.Connection = c.Mode == ModeConnection
	if c.DumpInterval <= 0 {
		errs = append(errs, fmt.Errorf("--conntrack.dump-interval %v: must be positive", c.DumpInterval))
	} else if c.Mode == ModeConnection && c.IdleTimeout > 0 && c.IdleTimeout <= 2*c.DumpInterval {
		// A long connection's series is updated once per dump: a
		// shorter idle timeout would remove it between two dumps.
		errs = append(errs, fmt.Errorf("--metrics.idle-timeout %v with --capture.mode=connection: must be more than twice --conntrack.dump-interval (%v), or a busy connection's series would be removed between two reads of its counters", c.IdleTimeout, c.DumpInterval))
	}
	if c.Mode == ModeConnection && c.DumpInterval > 0 && c.DeletionGrace <= 2*c.DumpInterval {
		// A deleted pod's addresses name it for the deletion grace: what
		// its last connections sent after the last dump is read at the
		// next one, after the pod may be gone.
		errs = append(errs, fmt.Errorf("--metrics.deletion-grace %v with --capture.mode=connection: must be more than twice --conntrack.dump-interval (%v), or what a connection sent just before its pod was deleted, read at the next dump, would count under Unknown", c.DeletionGrace, c.DumpInterval))
	}
	if c.ResyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("--nftables.resync-interval %v: must be positive", c.ResyncInterval))
	}

	if c.MaxSeries < 0 {
		errs = append(errs, fmt.Errorf("--metrics.max-series %d: must not be negative (0: no cap)", c.MaxSeries))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("--metrics.idle-timeout %v: must not be negative (0: never)", c.IdleTimeout))
	}
	if c.DeletionGrace < 0 {
		errs = append(errs, fmt.Errorf("--metrics.deletion-grace %v: must not be negative", c.DeletionGrace))
	}
	labels, err := attribute.ParseLabels(c.labels)
	if err != nil {
		errs = append(errs, fmt.Errorf("--metrics.labels: %w", err))
	}
	c.Labels = labels

	c.Kube.PodCIDRs, err = parseCIDRs("--kube.pod-cidr", c.podCIDRs)
	errs = append(errs, err)
	c.Kube.ServiceCIDRs, err = parseCIDRs("--kube.service-cidr", c.serviceCIDRs)
	errs = append(errs, err)
	if c.IdentityFile == "" && c.Kube.NodeName == "" {
		errs = append(errs, errors.New("--kube.node-name (or NODE_NAME) is required with Kubernetes identities; set it, or use --identity.file"))
	}
	return errors.Join(errs...)
}

func parseCIDRs(flag string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range values {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// nameFlag adds the flag to a value error of kingpin's, which says only
// what failed to parse.
func nameFlag(app *kingpin.Application, args []string, err error) error {
	pc, perr := app.ParseContext(args)
	if perr != nil {
		return err
	}
	for _, el := range pc.Elements {
		fc, ok := el.Clause.(*kingpin.FlagClause)
		if !ok || el.Value == nil {
			continue
		}
		m := fc.Model()
		if serr := m.Value.Set(*el.Value); serr != nil {
			return fmt.Errorf("--%s=%q: %w", m.Name, *el.Value, serr)
		}
	}
	return err
}
