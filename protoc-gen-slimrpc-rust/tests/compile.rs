//! The generated stubs compile, clippy-clean, against prost's messages and the real
//! `slimrpc` runtime: the whole corpus through the protoc plugin AND through the
//! prost-build `ServiceGenerator`, in one scratch crate under `target/` checked with
//! `cargo clippy --offline -D warnings` (reusing the workspace's lockfile, profile and target
//! directory so dependencies are not rebuilt).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::*;

/// Module tree source for `files` (`a.b.rs` → `pub mod a { pub mod b { include!(..) } }`),
/// including `suffix` files of the same package beside prost's.
fn module_tree(dir: &Path, packages: &[String], suffix: Option<&str>) -> String {
    #[derive(Default)]
    struct Node {
        includes: Vec<String>,
        children: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for pkg in packages {
        let mut node = &mut root;
        if pkg != "_" {
            // File names are already prost's module names (`google.r#type`).
            for part in pkg.split('.') {
                node = node.children.entry(part.to_string()).or_default();
            }
        }
        let messages = dir.join(format!("{pkg}.rs"));
        if messages.exists() {
            node.includes.push(messages.display().to_string());
        }
        if let Some(sfx) = suffix {
            let f = dir.join(format!("{pkg}.{sfx}"));
            if f.exists() {
                node.includes.push(f.display().to_string());
            }
        }
    }
    fn emit(node: &Node, out: &mut String) {
        for i in &node.includes {
            let _ = writeln!(out, "include!({i:?});");
        }
        for (name, child) in &node.children {
            let _ = writeln!(out, "pub mod {name} {{");
            emit(child, out);
            let _ = writeln!(out, "}}");
        }
    }
    let mut out = String::new();
    emit(&root, &mut out);
    out
}

/// Packages with a file in `dir` (`a.v1.rs` or `a.v1.slimrpc.rs` → `a.v1`).
fn packages(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir, dir, "rs")
        .into_iter()
        .map(|f| {
            let f = f.trim_end_matches(".rs");
            f.trim_end_matches(".slimrpc").to_string()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The corpus minus editions files: prost-build 0.14 cannot generate messages for them
/// (their stubs are covered by the goldens).
fn corpus_paths() -> Vec<std::path::PathBuf> {
    corpus_files()
        .iter()
        .map(|f| protos_dir().join(f))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.lines().any(|l| l.trim_start().starts_with("edition"))
        })
        .collect()
}

#[test]
fn generated_stubs_compile_clippy_clean_against_prost_messages_and_the_runtime() {
    let krate = root().join("target/slimrpc-rust-compile");
    let _ = std::fs::remove_dir_all(&krate);
    let plugin_dir = krate.join("gen/plugin");
    let build_dir = krate.join("gen/build_rs");
    std::fs::create_dir_all(&plugin_dir).expect("mkdir");
    std::fs::create_dir_all(&build_dir).expect("mkdir");
    std::fs::create_dir_all(krate.join("src")).expect("mkdir");
    let includes = [protos_dir(), third_party_dir()];

    // 1. Messages (prost-build + real protoc) next to the plugin's stubs.
    prost_build::Config::new()
        .protoc_executable(slimrpc_testkit::protoc())
        .out_dir(&plugin_dir)
        .compile_protos(&corpus_paths(), &includes)
        .expect("prost-build (messages only)");
    let files: Vec<String> = corpus_paths()
        .iter()
        .map(|p| {
            p.strip_prefix(protos_dir())
                .expect("in corpus")
                .display()
                .to_string()
        })
        .collect();
    assert_ok("protoc", &protoc_files(&plugin_dir, &files));

    // 2. Messages and stubs from prost-build with our ServiceGenerator.
    protoc_gen_slimrpc_rust::configure()
        .protoc_executable(slimrpc_testkit::protoc())
        .out_dir(&build_dir)
        .compile_protos(&corpus_paths(), &includes)
        .expect("prost-build with the SlimRPC service generator");

    let plugin_pkgs = packages(&plugin_dir);
    let build_pkgs = packages(&build_dir);
    assert_eq!(plugin_pkgs, build_pkgs);
    let stub_files = read_outputs(&plugin_dir);
    assert!(stub_files.len() > 10, "plugin wrote {stub_files:?}");
    let build_text: String = build_pkgs
        .iter()
        .map(|p| std::fs::read_to_string(build_dir.join(format!("{p}.rs"))).expect("read"))
        .collect();
    assert!(build_text.contains("pub mod test_client") || build_text.contains("_client {"));

    let lib = format!(
        "//! Scratch crate: every generated SlimRPC stub of the corpus.\n\
         #![allow(missing_docs)]\n\
         // prost copies proto comments verbatim; google/type/date.proto trips this lint.\n\
         #![allow(clippy::doc_overindented_list_items)]\n\
         /// Through the protoc plugin.\npub mod plugin {{\n{}}}\n\
         /// Through prost-build's ServiceGenerator.\npub mod build_rs {{\n{}}}\n",
        module_tree(&plugin_dir, &plugin_pkgs, Some("slimrpc.rs")),
        module_tree(&build_dir, &build_pkgs, None),
    );
    std::fs::write(krate.join("src/lib.rs"), lib).expect("write lib.rs");
    let ws = root();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            r#"[package]
name = "slimrpc-generated-check"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
prost = "0.14"
prost-types = "0.14"
futures = "0.3"
slimrpc = {{ path = "{}", package = "slimrpc-runtime" }}

[workspace]

[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
opt-level = 1
"#,
            ws.join("slimrpc-runtime").display()
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(ws.join("Cargo.lock"), krate.join("Cargo.lock")).expect("copy Cargo.lock");

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let run = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .args(["clippy", "--offline", "--quiet", "--", "-D", "warnings"])
        .output()
        .expect("run cargo clippy");
    assert_ok("cargo clippy on the generated stubs", &run);
}
