// Package proto is a SHIM of google.golang.org/protobuf/proto (signatures only, no encoding;
// see testdata/go/README.md).
package proto

import (
	"errors"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Message is a protocol buffer message.
type Message = protoreflect.ProtoMessage

var errShim = errors.New("google.golang.org/protobuf shim: no encoding available")

// Marshal returns the wire encoding of m.
func Marshal(m Message) ([]byte, error) { return nil, errShim }

// Unmarshal parses b into m.
func Unmarshal(b []byte, m Message) error { return errShim }
