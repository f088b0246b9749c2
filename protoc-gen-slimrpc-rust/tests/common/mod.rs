//! Helpers of the integration tests: the shared proto corpus, scratch directories under
//! `target/`, and real protoc/buf runs of the built plugin.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    slimrpc_testkit::root()
}

pub fn protos_dir() -> PathBuf {
    root().join("testdata/protos")
}

pub fn third_party_dir() -> PathBuf {
    root().join("testdata/third_party")
}

pub fn golden_dir() -> PathBuf {
    root().join("testdata/golden/rust")
}

pub fn plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_protoc-gen-slimrpc-rust"))
}

/// Files with extension `ext` under `dir`, relative to `base`, sorted.
pub fn walk(base: &Path, dir: &Path, ext: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(base, &p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            let rel = p.strip_prefix(base).expect("under base");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    out
}

/// Every `.proto` of the corpus, relative to `testdata/protos`.
pub fn corpus_files() -> Vec<String> {
    walk(&protos_dir(), &protos_dir(), "proto")
}

/// A fresh empty directory under `target/test-tmp`.
pub fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = root().join("target/test-tmp").join(format!(
        "rust-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// protoc over the corpus with our plugin into `out`.
pub fn protoc_corpus(out: &Path, param: Option<&str>) -> Output {
    protoc_with(out, param, &corpus_files())
}

/// protoc over `files` (relative to the corpus) with our plugin into `out`.
pub fn protoc_files(out: &Path, files: &[String]) -> Output {
    protoc_with(out, None, files)
}

fn protoc_with(out: &Path, param: Option<&str>, files: &[String]) -> Output {
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    cmd.arg(format!("-I{}", protos_dir().display()))
        .arg(format!("-I{}", third_party_dir().display()))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-rust={}",
            plugin().display()
        ));
    match param {
        Some(p) => cmd.arg(format!("--slimrpc-rust_out={p}:{}", out.display())),
        None => cmd.arg(format!("--slimrpc-rust_out={}", out.display())),
    };
    cmd.args(files);
    cmd.output().expect("run protoc")
}

pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `*.slimrpc.rs` files of `dir` by name.
pub fn read_outputs(dir: &Path) -> BTreeMap<String, String> {
    walk(dir, dir, "rs")
        .into_iter()
        .filter(|f| f.ends_with(".slimrpc.rs"))
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(&f)).expect("read generated file");
            (f, text)
        })
        .collect()
}
