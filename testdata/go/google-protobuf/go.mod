// SHIM of google.golang.org/protobuf for type-checking generated code (see ../README.md).
module google.golang.org/protobuf

go 1.22
