// Package protoimpl is a SHIM used by the stand-in message types of the type-check tests
// (see testdata/go/README.md); the real package has a different API.
package protoimpl

import "google.golang.org/protobuf/reflect/protoreflect"

type message[T any, P interface {
	*T
	protoreflect.ProtoMessage
}] struct {
	p P
}

func (m message[T, P]) New() protoreflect.Message { return message[T, P]{p: P(new(T))} }

func (m message[T, P]) Interface() protoreflect.ProtoMessage { return m.p }

// Reflect returns the reflective view of p.
func Reflect[T any, P interface {
	*T
	protoreflect.ProtoMessage
}](p P) protoreflect.Message {
	return message[T, P]{p: p}
}
