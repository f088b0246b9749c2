//! Golden files: the corpus generated through real protoc and through real `buf generate`
//! must both equal `testdata/golden/python/<runtime>/`, for each `runtime=` value (`v3`, the
//! default, and `v1`). `SLIMRPC_BLESS=1` (`cargo xtask golden`) rewrites the goldens from the
//! protoc run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files, "py");
    files
        .into_iter()
        .filter(|f| f.ends_with("_pb2_slimrpc.py"))
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(&f)).expect("read generated file");
            (f, text)
        })
        .collect()
}

fn compare(what: &str, runtime: &str, generated: &BTreeMap<String, String>) {
    let golden = read_tree(&golden_dir(runtime));
    assert!(!generated.is_empty(), "{what}: nothing was generated");
    let gen_names: Vec<_> = generated.keys().collect();
    let golden_names: Vec<_> = golden.keys().collect();
    assert_eq!(
        gen_names, golden_names,
        "{what}: generated file set differs from testdata/golden/python/{runtime} (run `cargo xtask golden`)"
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

/// Rewrites the goldens of `runtime`. Each file is replaced by a rename, and only files no
/// longer generated are removed, so the tests that compare with the same goldens while
/// `cargo xtask golden` runs (buf, the explicit `runtime=v3`) never see a half-written tree.
fn bless(runtime: &str, generated: &BTreeMap<String, String>) {
    let dir = golden_dir(runtime);
    for stale in read_tree(&dir)
        .keys()
        .filter(|f| !generated.contains_key(*f))
    {
        std::fs::remove_file(dir.join(stale)).expect("remove stale golden");
    }
    for (name, text) in generated {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir golden");
        let tmp = p.with_extension(format!("py.bless-{}", std::process::id()));
        std::fs::write(&tmp, text).expect("write golden");
        std::fs::rename(&tmp, &p).expect("replace golden");
    }
}

fn protoc_matches_goldens(runtime: &str, param: Option<&str>) {
    let out = scratch(&format!("golden-protoc-{runtime}"));
    let run = protoc(&corpus_includes(), &corpus_files(), &out, param, false);
    assert_ok("protoc", &run);
    let generated = read_tree(&out);
    if std::env::var_os("SLIMRPC_BLESS").is_some() {
        bless(runtime, &generated);
    }
    compare("protoc", runtime, &generated);
}

fn buf_generate_matches_goldens(runtime: &str, param: Option<&str>) {
    let work = scratch(&format!("golden-buf-{runtime}"));
    // A buf v2 workspace over the corpus and its third-party imports.
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
    let opt = param
        .map(|p| format!("    opt:\n      - {p}\n"))
        .unwrap_or_default();
    std::fs::write(
        work.join("buf.gen.yaml"),
        format!(
            "version: v2\nplugins:\n  - local: {}\n    out: gen\n{opt}",
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
    compare("buf", runtime, &read_tree(&work.join("gen")));
}

#[test]
fn golden_python_v3_by_default_protoc_output_matches_goldens() {
    let (runtime, param) = RUNTIMES[0];
    assert_eq!((runtime, param), ("v3", None));
    protoc_matches_goldens(runtime, param);
}

#[test]
fn golden_python_v1_protoc_output_matches_goldens() {
    let (runtime, param) = RUNTIMES[1];
    protoc_matches_goldens(runtime, param);
}

#[test]
fn golden_python_v3_explicit_parameter_equals_the_default() {
    let out = scratch("golden-protoc-v3-explicit");
    let run = protoc(
        &corpus_includes(),
        &corpus_files(),
        &out,
        Some("runtime=v3"),
        false,
    );
    assert_ok("protoc runtime=v3", &run);
    compare("protoc runtime=v3", "v3", &read_tree(&out));
}

#[test]
fn golden_python_v3_buf_generate_output_matches_goldens() {
    buf_generate_matches_goldens(RUNTIMES[0].0, RUNTIMES[0].1);
}

#[test]
fn golden_python_v1_buf_generate_output_matches_goldens() {
    buf_generate_matches_goldens(RUNTIMES[1].0, RUNTIMES[1].1);
}
