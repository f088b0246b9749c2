// Package proto is a SHIM of google.golang.org/protobuf/proto (signatures only, no encoding;
// see testdata/go/README.md).
package proto

import "google.golang.org/protobuf/reflect/protoreflect"

// Message is a protocol buffer message.
type Message = protoreflect.ProtoMessage

// Marshal stands in for the wire encoding of m: the shim encodes nothing and returns an
// empty payload.
func Marshal(m Message) ([]byte, error) { return []byte{}, nil }

// Unmarshal stands in for parsing b into m: the shim leaves m unchanged.
func Unmarshal(b []byte, m Message) error { return nil }
