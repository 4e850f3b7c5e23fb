package rulescheck

import (
	amcommon "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/pkg/labels"
)

func matchers(m amcommon.Matchers) labels.Matchers { return labels.Matchers(m) }
