// Package rulescheck holds the static checks of podflow's rules and
// Alertmanager configuration that need the Prometheus and Alertmanager Go
// packages: rule names, labels, annotations and runbooks, the metrics every
// expression reads, the functions rulers reject, the tiering of hourly
// series, route tests through amtool, the inhibition matchers, and the
// benchmark of the hourly groups.
package rulescheck
