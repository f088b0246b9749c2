// SHIM of the API surface of github.com/agntcy/slim-bindings-go (see testdata/go/README.md):
// signatures only, written from TARGET-APIS.md; nothing here talks to SLIM.

// Package slim_bindings holds App, Name and the UniFFI RPC types (v1.3 layout).
package slim_bindings

import (
	"fmt"
	"time"
)

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

// RpcCode is the status code of an RPC (gRPC numbering).
type RpcCode uint

const (
	RpcCodeOk                 RpcCode = 0
	RpcCodeCancelled          RpcCode = 1
	RpcCodeUnknown            RpcCode = 2
	RpcCodeInvalidArgument    RpcCode = 3
	RpcCodeDeadlineExceeded   RpcCode = 4
	RpcCodeNotFound           RpcCode = 5
	RpcCodeAlreadyExists      RpcCode = 6
	RpcCodePermissionDenied   RpcCode = 7
	RpcCodeResourceExhausted  RpcCode = 8
	RpcCodeFailedPrecondition RpcCode = 9
	RpcCodeAborted            RpcCode = 10
	RpcCodeOutOfRange         RpcCode = 11
	RpcCodeUnimplemented      RpcCode = 12
	RpcCodeInternal           RpcCode = 13
	RpcCodeUnavailable        RpcCode = 14
	RpcCodeDataLoss           RpcCode = 15
	RpcCodeUnauthenticated    RpcCode = 16
)

// RpcError wraps one of the variants below; the value and the pointer both implement error.
type RpcError struct {
	err error
}

func (e RpcError) Error() string { return e.err.Error() }

func (e RpcError) Unwrap() error { return e.err }

// AsError returns the error (nil for a nil *RpcError).
func (e *RpcError) AsError() error {
	if e == nil {
		return nil
	}
	return e
}

// RpcErrorRpc is a status from the peer.
type RpcErrorRpc struct {
	Code    RpcCode
	Message string
	Details *[]byte
}

func (e RpcErrorRpc) Error() string { return fmt.Sprintf("rpc error: code %d: %s", e.Code, e.Message) }

// RpcErrorMulticastRpc is a status from one member of a group call.
type RpcErrorMulticastRpc struct {
	Origin  string
	Code    RpcCode
	Message string
	Details *[]byte
}

func (e RpcErrorMulticastRpc) Error() string {
	return fmt.Sprintf("rpc error from %s: code %d: %s", e.Origin, e.Code, e.Message)
}

// RpcErrorMulticastSessionClosed reports a group session that closed before every member finished.
type RpcErrorMulticastSessionClosed struct {
	Completed uint32
	Total     uint32
	Received  []string
	Missing   []string
}

func (e RpcErrorMulticastSessionClosed) Error() string {
	return fmt.Sprintf("group session closed: %d of %d members completed", e.Completed, e.Total)
}

// NewRpcErrorRpc builds an RpcError with a status code.
func NewRpcErrorRpc(code RpcCode, message string, details *[]byte) *RpcError {
	return &RpcError{err: RpcErrorRpc{Code: code, Message: message, Details: details}}
}

// NewRpcErrorMulticastRpc builds the RpcError of one member of a group call.
func NewRpcErrorMulticastRpc(origin string, code RpcCode, message string, details *[]byte) *RpcError {
	return &RpcError{err: RpcErrorMulticastRpc{Origin: origin, Code: code, Message: message, Details: details}}
}

// StreamMessage is one event of a point-to-point stream.
type StreamMessage interface{ isStreamMessage() }

type StreamMessageData struct{ Field0 []byte }
type StreamMessageError struct{ Field0 *RpcError }
type StreamMessageEnd struct{}

func (StreamMessageData) isStreamMessage()  {}
func (StreamMessageError) isStreamMessage() {}
func (StreamMessageEnd) isStreamMessage()   {}

// RpcMessageContext tells which member sent a response.
type RpcMessageContext struct {
	Source *Name
}

// RpcMulticastItem is one member's response.
type RpcMulticastItem struct {
	Context RpcMessageContext
	Message []byte
}

// MulticastStreamMessage is one event of a group stream.
type MulticastStreamMessage interface{ isMulticastStreamMessage() }

type MulticastStreamMessageData struct{ Item RpcMulticastItem }
type MulticastStreamMessageError struct{ Error *RpcError }
type MulticastStreamMessageEnd struct{}

func (MulticastStreamMessageData) isMulticastStreamMessage()  {}
func (MulticastStreamMessageError) isMulticastStreamMessage() {}
func (MulticastStreamMessageEnd) isMulticastStreamMessage()   {}

// ResponseStreamReader reads a point-to-point response stream.
type ResponseStreamReader struct{}

func (r *ResponseStreamReader) NextAsync() StreamMessage { return StreamMessageEnd{} }

// RequestStreamWriter writes a client stream and collects the single response.
type RequestStreamWriter struct{}

func (w *RequestStreamWriter) SendAsync(data []byte) error { return nil }

func (w *RequestStreamWriter) FinalizeAsync() ([]byte, error) { return nil, nil }

// BidiStreamHandler is a client bidi stream.
type BidiStreamHandler struct{}

func (b *BidiStreamHandler) SendAsync(data []byte) error { return nil }

func (b *BidiStreamHandler) CloseSendAsync() error { return nil }

func (b *BidiStreamHandler) RecvAsync() StreamMessage { return StreamMessageEnd{} }

// MulticastResponseReader reads the responses of every member of a group call.
type MulticastResponseReader struct {
	// Pending is a SHIM-ONLY test hook (not in the real API): NextAsync pops it, then ends.
	Pending []MulticastStreamMessage
}

func (r *MulticastResponseReader) NextAsync() MulticastStreamMessage {
	if len(r.Pending) == 0 {
		return MulticastStreamMessageEnd{}
	}
	next := r.Pending[0]
	r.Pending = r.Pending[1:]
	return next
}

// MulticastBidiStreamHandler is a client stream to a group.
type MulticastBidiStreamHandler struct{}

func (b *MulticastBidiStreamHandler) SendAsync(data []byte) error { return nil }

func (b *MulticastBidiStreamHandler) CloseSendAsync() error { return nil }

func (b *MulticastBidiStreamHandler) RecvAsync() MulticastStreamMessage {
	return MulticastStreamMessageEnd{}
}

// Context is the server-side call context.
type Context struct{}

func (c *Context) Deadline() time.Time { return time.Time{} }

func (c *Context) RemainingTime() time.Duration { return 0 }

func (c *Context) IsDeadlineExceeded() bool { return false }

func (c *Context) Metadata() map[string]string { return nil }

func (c *Context) SessionId() string { return "" }

// RequestStream is the server side of a client stream.
type RequestStream struct {
	// Pending is a SHIM-ONLY test hook (not in the real API): NextAsync pops it, then ends.
	Pending []StreamMessage
}

func (s *RequestStream) NextAsync() StreamMessage {
	if len(s.Pending) == 0 {
		return StreamMessageEnd{}
	}
	next := s.Pending[0]
	s.Pending = s.Pending[1:]
	return next
}

// ResponseSink is the server side of a response stream.
type ResponseSink struct {
	// Log is a SHIM-ONLY test hook (not in the real API): "send", "error: <message>",
	// "close" in call order.
	Log    []string
	closed bool
}

func (s *ResponseSink) SendAsync(data []byte) error {
	if s.closed {
		return NewRpcErrorRpc(RpcCodeFailedPrecondition, "sink closed", nil)
	}
	s.Log = append(s.Log, "send")
	return nil
}

// SendErrorAsync sends err and closes the stream.
func (s *ResponseSink) SendErrorAsync(err *RpcError) error {
	if s.closed {
		return NewRpcErrorRpc(RpcCodeFailedPrecondition, "sink closed", nil)
	}
	s.Log = append(s.Log, "error: "+err.Error())
	s.closed = true
	return nil
}

func (s *ResponseSink) CloseAsync() error {
	if s.closed {
		return NewRpcErrorRpc(RpcCodeFailedPrecondition, "sink closed", nil)
	}
	s.Log = append(s.Log, "close")
	s.closed = true
	return nil
}

func (s *ResponseSink) IsClosedAsync() bool { return s.closed }

// Handler interfaces implemented by generated code.
type UnaryUnaryHandler interface {
	Handle(request []byte, context *Context) ([]byte, error)
}

type UnaryStreamHandler interface {
	Handle(request []byte, context *Context, sink *ResponseSink) error
}

type StreamUnaryHandler interface {
	Handle(stream *RequestStream, context *Context) ([]byte, error)
}

type StreamStreamHandler interface {
	Handle(stream *RequestStream, context *Context, sink *ResponseSink) error
}

// ChannelInterface is the client side of SlimRPC (point-to-point or group).
type ChannelInterface interface {
	CallUnary(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) ([]byte, error)
	CallUnaryAsync(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) ([]byte, error)
	CallUnaryStream(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*ResponseStreamReader, error)
	CallUnaryStreamAsync(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*ResponseStreamReader, error)
	CallStreamUnary(serviceName string, methodName string, timeout *time.Duration, metadata *map[string]string) *RequestStreamWriter
	CallStreamStream(serviceName string, methodName string, timeout *time.Duration, metadata *map[string]string) *BidiStreamHandler
	CallMulticastUnary(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*MulticastResponseReader, error)
	CallMulticastUnaryAsync(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*MulticastResponseReader, error)
	CallMulticastUnaryStream(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*MulticastResponseReader, error)
	CallMulticastUnaryStreamAsync(serviceName string, methodName string, request []byte, timeout *time.Duration, metadata *map[string]string) (*MulticastResponseReader, error)
	CallMulticastStreamUnary(serviceName string, methodName string, timeout *time.Duration, metadata *map[string]string) *MulticastBidiStreamHandler
	CallMulticastStreamStream(serviceName string, methodName string, timeout *time.Duration, metadata *map[string]string) *MulticastBidiStreamHandler
}

// ServerInterface registers handlers.
type ServerInterface interface {
	RegisterUnaryUnary(serviceName string, methodName string, handler UnaryUnaryHandler)
	RegisterUnaryStream(serviceName string, methodName string, handler UnaryStreamHandler)
	RegisterStreamUnary(serviceName string, methodName string, handler StreamUnaryHandler)
	RegisterStreamStream(serviceName string, methodName string, handler StreamStreamHandler)
}

// Channel is the concrete ChannelInterface.
type Channel struct{ ChannelInterface }

// ChannelNewWithConnection creates a point-to-point channel.
func ChannelNewWithConnection(app *App, remote *Name, connectionId *uint64) *Channel {
	return &Channel{}
}

// ChannelNewGroupWithConnection creates a group channel.
func ChannelNewGroupWithConnection(app *App, members []*Name, connectionId *uint64) (*Channel, error) {
	return &Channel{}, nil
}
