// SHIM of the API surface of github.com/agntcy/slim-bindings-go (see testdata/go/README.md):
// signatures only, written from TARGET-APIS.md; nothing here talks to SLIM.

// Package slim_bindings (root of /v3) keeps App and Name; the RPC types live in slim_rpc.
package slim_bindings

// App is a SLIM application.
type App struct{}

// Name is a SLIM name (org/namespace/service).
type Name struct{ components [3]string }

// NewName builds a name.
func NewName(org, namespace, service string) *Name {
	return &Name{components: [3]string{org, namespace, service}}
}

// String is the name as text (org/namespace/service).
func (n *Name) String() string {
	return n.components[0] + "/" + n.components[1] + "/" + n.components[2]
}
