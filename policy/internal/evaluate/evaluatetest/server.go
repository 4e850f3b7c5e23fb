// Package evaluatetest serves AdminNetworkPolicies to the policy engine in
// unit tests.
package evaluatetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	npav1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// AdminPolicyClient serves AdminNetworkPolicies from a fixed list, the way an API
// server does to an informer: a list, then a watch that stays open. The
// generated fake clientset of the pinned network-policy-api does not build
// against this client-go.
func AdminPolicyClient(t *testing.T, objs []runtime.Object) npaclient.Interface {
	var items []npav1alpha1.AdminNetworkPolicy
	for _, o := range objs {
		anp := *o.(*npav1alpha1.AdminNetworkPolicy)
		anp.TypeMeta = metav1.TypeMeta{Kind: "AdminNetworkPolicy", APIVersion: "policy.networking.k8s.io/v1alpha1"}
		anp.ResourceVersion = "1"
		items = append(items, anp)
	}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		if r.URL.Query().Get("watch") != "true" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		// A streamed initial list (client-go's default): every object, then
		// the bookmark that ends the initial events; then an idle watch.
		kind := "BaselineAdminNetworkPolicy"
		if r.URL.Path == "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies" {
			kind = "AdminNetworkPolicy"
			for _, anp := range items {
				_ = enc.Encode(map[string]any{"type": "ADDED", "object": anp})
			}
		}
		_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{
			"kind": kind, "apiVersion": "policy.networking.k8s.io/v1alpha1",
			"metadata": map[string]any{"resourceVersion": "1", "annotations": map[string]string{"k8s.io/initial-events-end": "true"}},
		}})
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first: ends the open watches
	c, err := npaclient.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
