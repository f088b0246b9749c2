// Package protoreflect is a SHIM of google.golang.org/protobuf/reflect/protoreflect with only
// what generated SlimRPC code and its runtime need to type-check (see testdata/go/README.md).
package protoreflect

// ProtoMessage is implemented by every generated message type.
type ProtoMessage interface {
	ProtoReflect() Message
}

// Message is the reflective view of a message.
type Message interface {
	// New returns a new, empty message of the same type.
	New() Message
	// Interface returns the message as a ProtoMessage.
	Interface() ProtoMessage
}
