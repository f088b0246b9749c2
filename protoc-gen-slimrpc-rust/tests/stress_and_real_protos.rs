//! Issue 17: the Rust stubs generated for the stress corpus (`testdata/stress/protos`:
//! identifiers of 10 to 120 characters, 33 imports, six levels of nesting, comments with
//! lists, code, trailing whitespace, non-ASCII, `*/` and triple quotes) and for a real proto
//! sets from the package registries (every `.proto` of googleapis-common-protos from PyPI;
//! gRPC's health and reflection APIs from npm) pass
//! `rustfmt --check --edition 2024`, and compile against prost's messages and the real
//! `slimrpc` runtime under `cargo clippy -D warnings`.
//!
//! prost copies proto comments into its messages verbatim, and clippy has a lot to say about
//! googleapis' comments; so the messages live in a crate of their own (not linted: it is a
//! dependency) and the stubs crate, which clippy checks, re-exports them package by package.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use slimrpc_testkit::{real_proto_sets, stress_proto_files, stress_protos};

/// Packages (`a.b.v1`, as prost names its files; `_` for none) with a `.rs` file in `dir`.
fn packages(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = walk(dir, dir, "rs")
        .into_iter()
        .filter_map(|f| f.strip_suffix(suffix).map(str::to_string))
        .filter(|f| !f.ends_with(".slimrpc"))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[derive(Default)]
struct Node {
    lines: Vec<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn at(&mut self, pkg: &str) -> &mut Node {
        let mut node = self;
        if pkg != "_" {
            for part in pkg.split('.') {
                node = node.children.entry(part.to_string()).or_default();
            }
        }
        node
    }

    fn emit(&self, out: &mut String) {
        for l in &self.lines {
            let _ = writeln!(out, "{l}");
        }
        for (name, child) in &self.children {
            let _ = writeln!(out, "pub mod {name} {{");
            child.emit(out);
            let _ = writeln!(out, "}}");
        }
    }
}

fn write_crate(dir: &Path, name: &str, deps: &str, lib: &str) {
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(dir.join("src/lib.rs"), lib).expect("write lib.rs");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\n{deps}\n[workspace]\n\n[profile.dev]\ndebug = \"line-tables-only\"\n\n\
             [profile.dev.package.\"*\"]\nopt-level = 1\n"
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
}

#[test]
fn stress_and_real_api_stubs_are_rustfmt_clean_and_compile_clippy_clean_against_prost() {
    let work = root().join("target/slimrpc-rust-stress");
    let _ = std::fs::remove_dir_all(&work);
    let messages_dir = work.join("messages");
    let stubs_dir = work.join("stubs");
    let gen_messages = messages_dir.join("gen");
    let gen_stubs = stubs_dir.join("gen");
    std::fs::create_dir_all(&gen_messages).expect("mkdir");
    std::fs::create_dir_all(&gen_stubs).expect("mkdir");
    let (real_includes, real_files) = real_proto_sets();
    let mut includes = vec![stress_protos()];
    includes.extend(real_includes);
    let mut files = stress_proto_files();
    files.extend(real_files);

    // 1. Our stubs, through the protoc plugin.
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    for i in &includes {
        cmd.arg(format!("-I{}", i.display()));
    }
    cmd.arg(format!(
        "--plugin=protoc-gen-slimrpc-rust={}",
        plugin().display()
    ))
    .arg(format!("--slimrpc-rust_out={}", gen_stubs.display()))
    .args(&files);
    assert_ok(
        "protoc (stress + real APIs)",
        &cmd.output().expect("run protoc"),
    );
    let stubs = read_outputs(&gen_stubs);
    // 11 stress packages with services, 2 of googleapis and 3 of the gRPC sets.
    assert_eq!(stubs.len(), 16, "{:?}", stubs.keys());

    // 2. rustfmt leaves every stub as it is.
    let run = Command::new("rustfmt")
        .args(["--check", "--edition", "2024"])
        .args(stubs.keys().map(|f| gen_stubs.join(f)))
        .output()
        .expect("run rustfmt");
    assert_ok("rustfmt --check on the generated stubs", &run);

    // 3. The messages, from prost-build and real protoc, in a crate of their own.
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            includes
                .iter()
                .map(|i| i.join(f))
                .find(|p| p.exists())
                .expect("a proto of the sets")
        })
        .collect();
    prost_build::Config::new()
        .protoc_executable(slimrpc_testkit::protoc())
        .out_dir(&gen_messages)
        .compile_protos(&paths, &includes)
        .expect("prost-build (messages)");
    let message_pkgs = packages(&gen_messages, ".rs");
    let mut tree = Node::default();
    for pkg in &message_pkgs {
        let f = gen_messages.join(format!("{pkg}.rs"));
        tree.at(pkg)
            .lines
            .push(format!("include!({:?});", f.display().to_string()));
    }
    let mut lib = String::from(
        "//! Scratch crate: prost's messages of the stress corpus and googleapis.\n\
         #![allow(warnings, clippy::all, clippy::pedantic)]\n",
    );
    tree.emit(&mut lib);
    write_crate(
        &messages_dir,
        "slimrpc-stress-messages",
        "prost = \"0.14\"\nprost-types = \"0.14\"\n",
        &lib,
    );

    // 4. The stubs crate: each package re-exports its messages and includes its stubs.
    let mut tree = Node::default();
    for pkg in &message_pkgs {
        let path = if pkg == "_" {
            String::new()
        } else {
            format!("::{}", pkg.replace('.', "::"))
        };
        tree.at(pkg).lines.push(format!(
            "#[allow(unused_imports)]\npub use slimrpc_stress_messages{path}::*;"
        ));
    }
    for f in stubs.keys() {
        let pkg = f.trim_end_matches(".slimrpc.rs");
        let p = gen_stubs.join(f);
        tree.at(pkg)
            .lines
            .push(format!("include!({:?});", p.display().to_string()));
    }
    let mut lib = String::from(
        "//! Scratch crate: every SlimRPC stub of the stress corpus and googleapis.\n\
         #![allow(missing_docs)]\n",
    );
    tree.emit(&mut lib);
    write_crate(
        &stubs_dir,
        "slimrpc-stress-stubs",
        &format!(
            "prost = \"0.14\"\nprost-types = \"0.14\"\nfutures = \"0.3\"\n\
             slimrpc = {{ path = {:?}, package = \"slimrpc-runtime\" }}\n\
             slimrpc-stress-messages = {{ path = {:?} }}\n",
            root().join("slimrpc-runtime").display().to_string(),
            messages_dir.display().to_string()
        ),
        &lib,
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let run = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&stubs_dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["clippy", "--offline", "--quiet", "--", "-D", "warnings"])
        .output()
        .expect("run cargo clippy");
    assert_ok("cargo clippy -D warnings on the generated stubs", &run);
}
