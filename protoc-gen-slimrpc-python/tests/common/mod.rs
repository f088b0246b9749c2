//! Helpers shared by the integration tests: the proto corpus, scratch directories and
//! running real protoc/buf with the built plugin.

#![allow(dead_code)]

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

/// The bindings lines the plugin targets: (`runtime=` value, plugin parameter to select it).
/// `v3` is the default, so its goldens are generated without any parameter.
pub const RUNTIMES: [(&str, Option<&str>); 2] = [("v3", None), ("v1", Some("runtime=v1"))];

/// Goldens of one `runtime=` value.
pub fn golden_dir(runtime: &str) -> PathBuf {
    root().join("testdata/golden/python").join(runtime)
}

/// Every `.proto` of the corpus, relative to `testdata/protos`, sorted.
pub fn corpus_files() -> Vec<String> {
    let mut out = Vec::new();
    walk(&protos_dir(), &protos_dir(), &mut out, "proto");
    out.sort();
    out
}

/// Files with extension `ext` under `dir`, relative to `base`.
pub fn walk(base: &Path, dir: &Path, out: &mut Vec<String>, ext: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out, ext);
        } else if p.extension().is_some_and(|x| x == ext) {
            let rel = p.strip_prefix(base).expect("under base");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// A fresh empty directory under `target/test-tmp`.
pub fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = root().join("target/test-tmp").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

pub fn plugin() -> PathBuf {
    slimrpc_testkit::bin("protoc-gen-slimrpc-python")
}

/// Runs protoc on `files` (relative to `include`) with our plugin into `out`; `python_too`
/// adds protoc's own `--python_out`/`--pyi_out`.
pub fn protoc(
    includes: &[PathBuf],
    files: &[String],
    out: &Path,
    param: Option<&str>,
    python_too: bool,
) -> Output {
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    for i in includes {
        cmd.arg(format!("-I{}", i.display()));
    }
    cmd.arg(format!(
        "--plugin=protoc-gen-slimrpc-python={}",
        plugin().display()
    ));
    match param {
        Some(p) => cmd.arg(format!("--slimrpc-python_out={p}:{}", out.display())),
        None => cmd.arg(format!("--slimrpc-python_out={}", out.display())),
    };
    if python_too {
        cmd.arg(format!("--python_out={}", out.display()));
        cmd.arg(format!("--pyi_out={}", out.display()));
    }
    cmd.args(files);
    cmd.output().expect("run protoc")
}

pub fn corpus_includes() -> Vec<PathBuf> {
    vec![protos_dir(), third_party_dir()]
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

/// The venv's console script `name` (ruff, mypy).
pub fn venv_bin(name: &str) -> PathBuf {
    slimrpc_testkit::venv_script(name)
}

/// The Python with the official bindings of `runtime` installed: 3.3.8 for `v3`, 1.3.0 for
/// `v1`.
pub fn python_for(runtime: &str) -> PathBuf {
    match runtime {
        "v1" => slimrpc_testkit::python(),
        _ => slimrpc_testkit::python3(),
    }
}

/// The version of `slim-bindings` installed for `runtime`.
pub fn bindings_version(runtime: &str) -> &'static str {
    match runtime {
        "v1" => "1.3.0",
        _ => "3.3.8",
    }
}
