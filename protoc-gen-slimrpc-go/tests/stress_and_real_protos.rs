//! Issue 17: the Go files generated for the stress corpus (`testdata/stress/protos`:
//! identifiers of 10 to 120 characters, 33 imports, six levels of nesting, comments of every
//! shape, a file of bidi-streaming methods only) and for a real proto set from the package
//! registry (every `.proto` of googleapis-common-protos) are `gofmt -l` clean, and pass
//! `go vet` and `go build` against the real `google.golang.org/protobuf` with the message types
//! of the real `protoc-gen-go`. Files without `go_package` that we neither emit nor reference
//! need no `M` parameter.

mod common;

use common::*;
use protoc_gen_slimrpc_go::{PathType, Runtime};
use slimrpc_testkit::{
    googleapis_proto_files, googleapis_protos, stress_proto_files, stress_protos,
};

#[test]
fn stress_and_googleapis_go_is_gofmt_clean_vets_and_builds_without_go_package_on_unused_files() {
    let scratch = Scratch::new("stress");
    let includes = [stress_protos(), googleapis_protos()];
    let mut files = stress_proto_files();
    files.extend(googleapis_proto_files());
    let set = descriptor_set_in(&includes, &files, scratch.path());
    // Our plugin gets no M parameter: the files without go_package
    // (stress/nogo/v1/fields.proto, google/cloud/common_resources.proto, ...) declare no
    // service and no type our methods use.
    let generated =
        generate_with_protoc_in(&includes, &files, &["runtime=v3".into()], scratch.path());
    let without_go_package: Vec<(String, String)> = set
        .file
        .iter()
        .filter(|f| {
            f.options
                .as_ref()
                .and_then(|o| o.go_package.as_deref())
                .is_none_or(str::is_empty)
        })
        .map(|f| {
            let dir = f.name().trim_end_matches(".proto").replace(['.', '-'], "_");
            (f.name().to_string(), format!("example.com/nogopkg/{dir}"))
        })
        .collect();
    assert!(
        without_go_package
            .iter()
            .any(|(f, _)| f == "stress/nogo/v1/fields.proto"),
        "{without_go_package:?}"
    );
    // protoc-gen-go does need an import path for every file it writes.
    let packages = package_map(&set, &without_go_package, PathType::Import, None);
    // 10 stress files and 2 googleapis files declare services.
    assert_eq!(generated.len(), 12, "{:?}", generated.keys());
    assert_gofmt_clean(&scratch.path().join("protoc-out"));
    let bidi_only = generated
        .iter()
        .find(|(name, _)| name.ends_with("bidi_slimrpc.pb.go"))
        .map(|(_, text)| text)
        .expect("the bidi-only file");
    assert!(
        !bidi_only.contains("google.golang.org/protobuf/proto"),
        "{bidi_only}"
    );
    go_vet(
        &set,
        &packages,
        &generated,
        Runtime::V3,
        scratch.path(),
        None,
    );
}

#[test]
fn stress_go_of_the_v1_runtime_is_gofmt_clean() {
    let scratch = Scratch::new("stress-v1");
    let includes = [stress_protos(), googleapis_protos()];
    let generated = generate_with_protoc_in(
        &includes,
        &stress_proto_files(),
        &["runtime=v1".into()],
        scratch.path(),
    );
    assert_eq!(generated.len(), 10, "{:?}", generated.keys());
    assert_gofmt_clean(&scratch.path().join("protoc-out"));
}
