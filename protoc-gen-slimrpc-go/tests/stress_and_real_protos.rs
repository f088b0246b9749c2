//! Issue 17: the Go files generated for the stress corpus (`testdata/stress/protos`:
//! identifiers of 10 to 120 characters, 33 imports, six levels of nesting, comments of every
//! shape, a file of bidi-streaming methods only) and for a real proto set from the package
//! registries (every `.proto` of googleapis-common-protos from PyPI; gRPC's health and
//! reflection APIs from npm) are `gofmt -l` clean, and pass
//! `go vet` and `go build` against the real `google.golang.org/protobuf` with the message types
//! of the real `protoc-gen-go`. Files without `go_package` that we neither emit nor reference
//! need no `M` parameter. Both runtimes: the default against the slim-bindings-go `/v3` API,
//! `runtime=v1` against the v1.3 API (shims in `testdata/go`, see its README).

mod common;

use common::*;
use prost_types::FileDescriptorSet;
use protoc_gen_slimrpc_go::{PathType, Runtime};
use slimrpc_testkit::{real_proto_sets, stress_proto_files, stress_protos};

#[test]
fn stress_and_real_api_go_is_gofmt_clean_vets_and_builds_without_go_package_on_unused_files() {
    let scratch = Scratch::new("stress");
    let (real_includes, real_files) = real_proto_sets();
    let mut includes = vec![stress_protos()];
    includes.extend(real_includes);
    let mut files = stress_proto_files();
    files.extend(real_files);
    let set = descriptor_set_in(&includes, &files, scratch.path());
    let without_go_package = without_go_package(&set);
    assert!(
        without_go_package
            .iter()
            .any(|(f, _)| f == "stress/nogo/v1/fields.proto"),
        "{without_go_package:?}"
    );
    // Our plugin gets an M parameter only for the files it emits (grpc reflection v1alpha
    // has a service and no go_package); the other files without go_package
    // (stress/nogo/v1/fields.proto, google/cloud/common_resources.proto, ...) declare no
    // service and no type our methods use.
    let mut params = vec!["runtime=v3".to_string()];
    for (file, path) in &without_go_package {
        let fd = set.file.iter().find(|f| f.name() == file).expect("in set");
        if !fd.service.is_empty() {
            params.push(format!("M{file}={path}"));
        }
    }
    assert_eq!(params.len(), 2, "{params:?}");
    let generated = generate_with_protoc_in(&includes, &files, &params, scratch.path());
    // protoc-gen-go does need an import path for every file it writes.
    let packages = package_map(&set, &without_go_package, PathType::Import, None);
    // 11 stress files, 2 googleapis files and 3 gRPC files declare services.
    assert_stubs_and_reducers(&generated, 16);
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

/// `stubs` `_slimrpc.pb.go` files, and one reducers file per directory holding a stub of a
/// service with methods (every package of these corpora has its own directory).
fn assert_stubs_and_reducers(generated: &std::collections::BTreeMap<String, String>, stubs: usize) {
    let dir = |name: &str| {
        name.rsplit_once('/')
            .map_or(String::new(), |(d, _)| d.to_string())
    };
    let stub_names: Vec<&String> = generated
        .keys()
        .filter(|n| n.ends_with(protoc_gen_slimrpc_go::FILE_SUFFIX))
        .collect();
    assert_eq!(stub_names.len(), stubs, "{:?}", generated.keys());
    let with_methods: std::collections::BTreeSet<String> = generated
        .iter()
        .filter(|(n, text)| {
            n.ends_with(protoc_gen_slimrpc_go::FILE_SUFFIX) && text.contains("_MethodName = ")
        })
        .map(|(n, _)| dir(n))
        .collect();
    let reducers: Vec<String> = generated
        .keys()
        .filter(|n| n.ends_with(protoc_gen_slimrpc_go::REDUCERS_SUFFIX))
        .map(|n| dir(n))
        .collect();
    assert_eq!(
        reducers.len(),
        generated.len() - stubs,
        "{:?}",
        generated.keys()
    );
    assert_eq!(
        reducers
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        with_methods
    );
}

/// The files of `set` without `go_package`: (file, the import path the tests give it).
fn without_go_package(set: &FileDescriptorSet) -> Vec<(String, String)> {
    set.file
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
        .collect()
}

#[test]
fn stress_and_real_api_go_of_the_v1_runtime_is_gofmt_clean_vets_and_builds_against_slim_bindings_go_v1()
 {
    let scratch = Scratch::new("stress-v1");
    let (real_includes, real_files) = real_proto_sets();
    let mut includes = vec![stress_protos()];
    includes.extend(real_includes);
    let mut files = stress_proto_files();
    files.extend(real_files);
    let set = descriptor_set_in(&includes, &files, scratch.path());
    let without_go_package = without_go_package(&set);
    // As for the SLIM 3 runtime: an M parameter for the one emitted file without go_package.
    let mut params = vec!["runtime=v1".to_string()];
    for (file, path) in &without_go_package {
        let fd = set.file.iter().find(|f| f.name() == file).expect("in set");
        if !fd.service.is_empty() {
            params.push(format!("M{file}={path}"));
        }
    }
    assert_eq!(params.len(), 2, "{params:?}");
    let generated = generate_with_protoc_in(&includes, &files, &params, scratch.path());
    // 11 stress files, 2 googleapis files and 3 gRPC files declare services.
    assert_stubs_and_reducers(&generated, 16);
    assert_gofmt_clean(&scratch.path().join("protoc-out"));
    let packages = package_map(&set, &without_go_package, PathType::Import, None);
    go_vet(
        &set,
        &packages,
        &generated,
        Runtime::V1,
        scratch.path(),
        None,
    );
}
