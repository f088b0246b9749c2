// SHIM of the API surface of github.com/agntcy/slim-bindings-go (see testdata/go/README.md):
// signatures only, written from TARGET-APIS.md; nothing here talks to SLIM.

package slim_rpc

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"
)

// ResponseStream receives decoded messages; Recv returns the zero value and a nil error at
// the end of the stream.
type ResponseStream[T proto.Message] interface {
	Recv() (T, error)
}

// ServerStream is what a server-streaming handler sends responses through.
type ServerStream[T proto.Message] interface {
	Send(T) error
}

// ClientRequestStream sends a client stream and receives the single response.
type ClientRequestStream[TReq proto.Message, TResp proto.Message] interface {
	Send(TReq) error
	CloseAndRecv() (TResp, error)
}

// ClientBidiStream is the client side of a bidi stream.
type ClientBidiStream[TReq proto.Message, TResp proto.Message] interface {
	Send(TReq) error
	Recv() (TResp, error)
	CloseSend() error
}

// ServerBidiStream is the server side of a bidi stream.
type ServerBidiStream[TReq proto.Message, TResp proto.Message] interface {
	Send(TResp) error
	Recv() (TReq, error)
}

// MulticastItem is one member's decoded response.
type MulticastItem[T any] struct {
	Context RpcMessageContext
	Value   T
}

// MulticastResponseStream receives every member's responses; (nil, nil) at the end.
type MulticastResponseStream[T proto.Message] interface {
	Recv() (*MulticastItem[T], error)
}

// MulticastClientBidiStream is a client stream to a group.
type MulticastClientBidiStream[TReq proto.Message, TResp proto.Message] interface {
	Send(TReq) error
	CloseSend() error
	Recv() (*MulticastItem[TResp], error)
}

// decode returns a new T holding data.
func decode[T proto.Message](data []byte) (T, error) {
	var zero T
	msg, ok := zero.ProtoReflect().New().Interface().(T)
	if !ok {
		return zero, errors.New("shim: cannot create message")
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		return zero, err
	}
	return msg, nil
}

func fromStreamMessage[T proto.Message](m StreamMessage) (T, error) {
	var zero T
	switch v := m.(type) {
	case StreamMessageData:
		return decode[T](v.Field0)
	case StreamMessageError:
		return zero, v.Field0.AsError()
	default:
		return zero, nil
	}
}

func fromMulticastMessage[T proto.Message](m MulticastStreamMessage) (*MulticastItem[T], error) {
	switch v := m.(type) {
	case MulticastStreamMessageData:
		value, err := decode[T](v.Item.Message)
		if err != nil {
			return nil, err
		}
		return &MulticastItem[T]{Context: v.Item.Context, Value: value}, nil
	case MulticastStreamMessageError:
		return nil, v.Error.AsError()
	default:
		return nil, nil
	}
}

func encode[T proto.Message](msg T, send func([]byte) error) error {
	data, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	return send(data)
}

type clientResponseStream[T proto.Message] struct{ r *ResponseStreamReader }

func (s clientResponseStream[T]) Recv() (T, error) { return fromStreamMessage[T](s.r.NextAsync()) }

// NewClientResponseStream wraps a response stream reader.
func NewClientResponseStream[T proto.Message](r *ResponseStreamReader) ResponseStream[T] {
	return clientResponseStream[T]{r: r}
}

type clientRequestStream[TReq proto.Message, TResp proto.Message] struct{ w *RequestStreamWriter }

func (s clientRequestStream[TReq, TResp]) Send(m TReq) error { return encode(m, s.w.SendAsync) }

func (s clientRequestStream[TReq, TResp]) CloseAndRecv() (TResp, error) {
	data, err := s.w.FinalizeAsync()
	if err != nil {
		var zero TResp
		return zero, err
	}
	return decode[TResp](data)
}

// NewClientRequestStream wraps a request stream writer.
func NewClientRequestStream[TReq proto.Message, TResp proto.Message](w *RequestStreamWriter) ClientRequestStream[TReq, TResp] {
	return clientRequestStream[TReq, TResp]{w: w}
}

type clientBidiStream[TReq proto.Message, TResp proto.Message] struct{ b *BidiStreamHandler }

func (s clientBidiStream[TReq, TResp]) Send(m TReq) error { return encode(m, s.b.SendAsync) }

func (s clientBidiStream[TReq, TResp]) Recv() (TResp, error) {
	return fromStreamMessage[TResp](s.b.RecvAsync())
}

func (s clientBidiStream[TReq, TResp]) CloseSend() error { return s.b.CloseSendAsync() }

// NewClientBidiStream wraps a bidi stream handler.
func NewClientBidiStream[TReq proto.Message, TResp proto.Message](b *BidiStreamHandler) ClientBidiStream[TReq, TResp] {
	return clientBidiStream[TReq, TResp]{b: b}
}

type serverResponseStream[T proto.Message] struct{ s *RequestStream }

func (s serverResponseStream[T]) Recv() (T, error) { return fromStreamMessage[T](s.s.NextAsync()) }

// NewServerResponseStream wraps the incoming request stream of a handler.
func NewServerResponseStream[T proto.Message](s *RequestStream) ResponseStream[T] {
	return serverResponseStream[T]{s: s}
}

type serverRequestStream[T proto.Message] struct{ sink *ResponseSink }

func (s serverRequestStream[T]) Send(m T) error { return encode(m, s.sink.SendAsync) }

// NewServerRequestStream wraps the response sink of a handler.
func NewServerRequestStream[T proto.Message](sink *ResponseSink) ServerStream[T] {
	return serverRequestStream[T]{sink: sink}
}

type serverBidiStream[TReq proto.Message, TResp proto.Message] struct {
	s    *RequestStream
	sink *ResponseSink
}

func (s serverBidiStream[TReq, TResp]) Send(m TResp) error { return encode(m, s.sink.SendAsync) }

func (s serverBidiStream[TReq, TResp]) Recv() (TReq, error) {
	return fromStreamMessage[TReq](s.s.NextAsync())
}

// NewServerBidiStream wraps the request stream and response sink of a handler.
func NewServerBidiStream[TReq proto.Message, TResp proto.Message](s *RequestStream, sink *ResponseSink) ServerBidiStream[TReq, TResp] {
	return serverBidiStream[TReq, TResp]{s: s, sink: sink}
}

type multicastResponseStream[T proto.Message] struct{ r *MulticastResponseReader }

func (s multicastResponseStream[T]) Recv() (*MulticastItem[T], error) {
	return fromMulticastMessage[T](s.r.NextAsync())
}

// NewMulticastResponseStream wraps a group response reader.
func NewMulticastResponseStream[T proto.Message](r *MulticastResponseReader) MulticastResponseStream[T] {
	return multicastResponseStream[T]{r: r}
}

type multicastClientBidiStream[TReq proto.Message, TResp proto.Message] struct {
	b *MulticastBidiStreamHandler
}

func (s multicastClientBidiStream[TReq, TResp]) Send(m TReq) error { return encode(m, s.b.SendAsync) }

func (s multicastClientBidiStream[TReq, TResp]) CloseSend() error { return s.b.CloseSendAsync() }

func (s multicastClientBidiStream[TReq, TResp]) Recv() (*MulticastItem[TResp], error) {
	return fromMulticastMessage[TResp](s.b.RecvAsync())
}

// NewMulticastClientBidiStream wraps a group stream handler.
func NewMulticastClientBidiStream[TReq proto.Message, TResp proto.Message](b *MulticastBidiStreamHandler) MulticastClientBidiStream[TReq, TResp] {
	return multicastClientBidiStream[TReq, TResp]{b: b}
}

type contextKey int

const (
	metadataKey contextKey = iota
	sessionIDKey
)

// WithMetadata attaches call metadata to ctx.
func WithMetadata(ctx context.Context, md map[string]string) context.Context {
	return context.WithValue(ctx, metadataKey, md)
}

// MetadataFromContext returns the metadata attached with WithMetadata.
func MetadataFromContext(ctx context.Context) (map[string]string, bool) {
	md, ok := ctx.Value(metadataKey).(map[string]string)
	return md, ok
}

// SessionIdFromContext returns the session id of a server call.
func SessionIdFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(sessionIDKey).(string)
	return id, ok
}

// ContextFromRpcContext turns a server call context into a context.Context.
func ContextFromRpcContext(rc *Context) (context.Context, context.CancelFunc) {
	ctx := context.Background()
	cancel := context.CancelFunc(func() {})
	if d := rc.Deadline(); !d.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, d)
	}
	if id := rc.SessionId(); id != "" {
		ctx = context.WithValue(ctx, sessionIDKey, id)
	}
	if md := rc.Metadata(); len(md) > 0 {
		ctx = WithMetadata(ctx, md)
	}
	return ctx, cancel
}
