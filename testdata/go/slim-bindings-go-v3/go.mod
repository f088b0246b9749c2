// SHIM of github.com/agntcy/slim-bindings-go/v3 for type-checking generated code (see ../README.md).
module github.com/agntcy/slim-bindings-go/v3

go 1.22

require google.golang.org/protobuf v1.36.12
