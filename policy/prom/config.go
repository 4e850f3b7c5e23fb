// Package prom reads what podflow recorded from a Prometheus server over its
// HTTP API: the connection options (as promtool takes them) and the queries
// that return observed workload pairs. The policy generator and the topology
// picture share it, so both read the same series the same way.
package prom

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
)

// Config is how to reach Prometheus. HTTPConfigFile is promtool's
// --http.config.file (TLS, authorization, basic auth, proxy); the direct
// TLS and bearer-token fields cover the common cases without a file and
// cannot be combined with it.
type Config struct {
	URL             string
	HTTPConfigFile  string
	BearerTokenFile string
	CAFile          string
	CertFile        string
	KeyFile         string
	ServerName      string
	InsecureTLS     bool
}

// RegisterFlags adds the connection flags to app and fills c when app parses.
func (c *Config) RegisterFlags(app *kingpin.Application) {
	app.Flag("prometheus.url", "URL of the Prometheus server that scrapes podflow and evaluates its rules.").
		Default("http://localhost:9090").StringVar(&c.URL)
	app.Flag("http.config.file", "HTTP client configuration file (TLS, authorization, basic auth), as promtool takes it.").
		PlaceHolder("<filename>").StringVar(&c.HTTPConfigFile)
	app.Flag("prometheus.bearer-token-file", "File holding the bearer token sent to Prometheus.").
		PlaceHolder("<filename>").StringVar(&c.BearerTokenFile)
	app.Flag("prometheus.tls.ca-file", "CA certificate that signs the Prometheus server's certificate.").
		PlaceHolder("<filename>").StringVar(&c.CAFile)
	app.Flag("prometheus.tls.cert-file", "Client certificate for Prometheus (with --prometheus.tls.key-file).").
		PlaceHolder("<filename>").StringVar(&c.CertFile)
	app.Flag("prometheus.tls.key-file", "Key of the client certificate.").
		PlaceHolder("<filename>").StringVar(&c.KeyFile)
	app.Flag("prometheus.tls.server-name", "Server name expected in the Prometheus server's certificate.").
		StringVar(&c.ServerName)
	app.Flag("prometheus.tls.insecure-skip-verify", "Do not verify the Prometheus server's certificate.").
		BoolVar(&c.InsecureTLS)
}

func (c *Config) direct() bool {
	return c.BearerTokenFile != "" || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" ||
		c.ServerName != "" || c.InsecureTLS
}

// Validate reports the first option that cannot work.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--prometheus.url: want an http or https URL, got %q", c.URL)
	}
	if c.HTTPConfigFile != "" && c.direct() {
		return errors.New("--http.config.file cannot be combined with the --prometheus.bearer-token-file and --prometheus.tls.* flags: put them in the file")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("--prometheus.tls.cert-file and --prometheus.tls.key-file go together")
	}
	return nil
}

// HTTPClientConfig is the client configuration the options describe.
func (c *Config) HTTPClientConfig() (*config.HTTPClientConfig, error) {
	if c.HTTPConfigFile != "" {
		hc, _, err := config.LoadHTTPConfigFile(c.HTTPConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--http.config.file: %w", err)
		}
		return hc, nil
	}
	hc := config.DefaultHTTPClientConfig
	hc.TLSConfig = config.TLSConfig{
		CAFile:             c.CAFile,
		CertFile:           c.CertFile,
		KeyFile:            c.KeyFile,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureTLS,
	}
	if c.BearerTokenFile != "" {
		hc.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: c.BearerTokenFile}
	}
	if err := hc.Validate(); err != nil {
		return nil, err
	}
	return &hc, nil
}

// NewAPI returns a client of the Prometheus HTTP API the options describe.
func NewAPI(c Config) (v1.API, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	hc, err := c.HTTPClientConfig()
	if err != nil {
		return nil, err
	}
	rt, err := config.NewRoundTripperFromConfig(*hc, "podflow-policy")
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: c.URL, RoundTripper: rt})
	if err != nil {
		return nil, err
	}
	return v1.NewAPI(client), nil
}
