// Pinned Go modules of the test suite. `cargo xtask setup` downloads them once
// into the module cache under .tools/gopath (the only time Go reaches the module
// proxy) and builds protoc-gen-go from here into .tools/bin; the tests then run
// with GOPROXY=off, copying this go.sum next to the go.mod they write.
module slimrpc.test/gomodules

go 1.24

require google.golang.org/protobuf v1.36.12 // indirect

tool google.golang.org/protobuf/cmd/protoc-gen-go
