// Package guardrail turns the rules' policy values (forbidden namespace pairs
// and the denylist prefix, from the values file the alerting rules are
// rendered from) into AdminNetworkPolicies, so that what alerts and what is
// enforced never disagree.
package guardrail

import (
	"fmt"
	"regexp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/rules/rulegen"
)

// maxNetworks is the most CIDRs one AdminNetworkPolicy peer may hold.
const maxNetworks = 25

// Result holds the AdminNetworkPolicies and the values that gave none.
type Result struct {
	Policies []*npav1alpha1.AdminNetworkPolicy
	Notes    []string
}

func nameIn(names []string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: names,
	}}}
}

// matching returns the namespaces an anchored RE2 value matches, as the
// alerting rules match label values.
func matching(expr string, namespaces []string) ([]string, error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range namespaces {
		if re.MatchString(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func newANP(name string, priority int32, subject npav1alpha1.AdminNetworkPolicySubject) *npav1alpha1.AdminNetworkPolicy {
	return &npav1alpha1.AdminNetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "policy.networking.k8s.io/v1alpha1", Kind: "AdminNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "podflow-policy"},
		},
		Spec: npav1alpha1.AdminNetworkPolicySpec{Priority: priority, Subject: subject},
	}
}

// Build returns the guardrails of cfg over the cluster's current namespaces:
// one AdminNetworkPolicy denying egress to the denylisted networks from every
// namespace (at priority), and one per forbidden namespace pair denying
// egress from the source namespaces to the destination namespaces (at
// priority+1, +2, ...). A regular expression selects the namespaces that
// exist now: regenerate when namespaces are added.
func Build(cfg rulegen.Config, nets networks.Networks, namespaces []string, priority int32) (Result, error) {
	var res Result
	var deny []npav1alpha1.CIDR
	for _, name := range nets.Names() {
		if len(name) < len(cfg.Denylist.Prefix) || name[:len(cfg.Denylist.Prefix)] != cfg.Denylist.Prefix {
			continue
		}
		for _, p := range nets[name] {
			deny = append(deny, npav1alpha1.CIDR(p.String()))
		}
	}
	if len(deny) > 0 {
		anp := newANP("podflow-denylist", priority, npav1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}})
		for i := 0; i < len(deny); i += maxNetworks {
			chunk := deny[i:min(i+maxNetworks, len(deny))]
			anp.Spec.Egress = append(anp.Spec.Egress, npav1alpha1.AdminNetworkPolicyEgressRule{
				Name:   fmt.Sprintf("denylist-%d", i/maxNetworks+1),
				Action: npav1alpha1.AdminNetworkPolicyRuleActionDeny,
				To:     []npav1alpha1.AdminNetworkPolicyEgressPeer{{Networks: chunk}},
			})
		}
		res.Policies = append(res.Policies, anp)
	} else {
		res.Notes = append(res.Notes, fmt.Sprintf("no network in --networks.file starts with the denylist prefix %q: no denylist policy", cfg.Denylist.Prefix))
	}
	for i, fp := range cfg.ForbiddenNamespacePairs {
		src, err := matching(fp.SourceNamespace, namespaces)
		if err != nil {
			return Result{}, fmt.Errorf("forbidden_namespace_pairs[%d].source_namespace: %w", i, err)
		}
		dst, err := matching(fp.DestinationNamespace, namespaces)
		if err != nil {
			return Result{}, fmt.Errorf("forbidden_namespace_pairs[%d].destination_namespace: %w", i, err)
		}
		if len(src) == 0 || len(dst) == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("forbidden pair %q to %q matches no namespace on one side: no policy", fp.SourceNamespace, fp.DestinationNamespace))
			continue
		}
		anp := newANP(fmt.Sprintf("podflow-forbidden-%d", i+1), priority+1+int32(i), npav1alpha1.AdminNetworkPolicySubject{Namespaces: nameIn(src)})
		anp.Annotations = map[string]string{"podflow.io/forbidden-pair": fp.SourceNamespace + " -> " + fp.DestinationNamespace}
		anp.Spec.Egress = []npav1alpha1.AdminNetworkPolicyEgressRule{{
			Name:   "forbidden",
			Action: npav1alpha1.AdminNetworkPolicyRuleActionDeny,
			To:     []npav1alpha1.AdminNetworkPolicyEgressPeer{{Namespaces: nameIn(dst)}},
		}}
		res.Policies = append(res.Policies, anp)
	}
	return res, nil
}
