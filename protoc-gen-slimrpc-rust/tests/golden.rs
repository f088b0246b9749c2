//! Golden files: the corpus generated through real protoc and through real `buf generate`
//! must both equal `testdata/golden/rust/`, and every golden must be what `rustfmt` would
//! print. `SLIMRPC_BLESS=1` (`cargo xtask golden`) rewrites the goldens from the protoc run.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::*;

/// Serialises the tests of this file: with `SLIMRPC_BLESS` one of them rewrites the goldens
/// the others read.
fn goldens_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn compare(what: &str, generated: &BTreeMap<String, String>) {
    let golden = read_outputs(&golden_dir());
    assert!(!generated.is_empty(), "{what}: nothing was generated");
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        golden.keys().collect::<Vec<_>>(),
        "{what}: generated file set differs from testdata/golden/rust (run `cargo xtask golden`)"
    );
    for (name, text) in generated {
        if golden[name] != *text {
            let first = golden[name]
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{what}: {name} differs from its golden at line {} (run `cargo xtask golden` and review):\n golden:    {:?}\n generated: {:?}",
                first + 1,
                golden[name].lines().nth(first),
                text.lines().nth(first)
            );
        }
    }
}

#[test]
fn golden_rust_protoc_output_matches_goldens() {
    let _guard = goldens_lock();
    let out = scratch("golden-protoc");
    assert_ok("protoc", &protoc_corpus(&out, None));
    let generated = read_outputs(&out);
    if std::env::var_os("SLIMRPC_BLESS").is_some() {
        let dir = golden_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir golden");
        for (name, text) in &generated {
            std::fs::write(dir.join(name), text).expect("write golden");
        }
    }
    compare("protoc", &generated);
}

#[test]
fn golden_rust_buf_generate_output_matches_goldens() {
    let _guard = goldens_lock();
    let work = scratch("golden-buf");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(protos_dir(), work.join("protos")).expect("symlink protos");
        std::os::unix::fs::symlink(third_party_dir(), work.join("third_party"))
            .expect("symlink third_party");
    }
    std::fs::write(
        work.join("buf.yaml"),
        "version: v2\nmodules:\n  - path: protos\n  - path: third_party\n",
    )
    .expect("write buf.yaml");
    std::fs::write(
        work.join("buf.gen.yaml"),
        format!(
            // One output per proto package: like buf's prost plugins, it must see every
            // file of a package in one request (`strategy: all`).
            "version: v2\nplugins:\n  - local: {}\n    out: gen\n    strategy: all\n",
            plugin().display()
        ),
    )
    .expect("write buf.gen.yaml");
    let run = Command::new(slimrpc_testkit::buf())
        .current_dir(&work)
        .env("BUF_CACHE_DIR", work.join(".cache"))
        .args(["generate", "protos"])
        .output()
        .expect("run buf");
    assert_ok("buf generate", &run);
    compare("buf", &read_outputs(&work.join("gen")));
}

#[test]
fn golden_rust_files_are_rustfmt_clean() {
    let _guard = goldens_lock();
    let golden = golden_dir();
    let files = read_outputs(&golden);
    assert!(!files.is_empty(), "no goldens under {}", golden.display());
    let run = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .args(files.keys().map(|f| golden.join(f)))
        .output()
        .expect("run rustfmt (part of the Rust toolchain)");
    assert_ok("rustfmt --check on the goldens", &run);
}
