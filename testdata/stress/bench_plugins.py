#!/usr/bin/env python3
"""Plugin CPU time per protoc run, ours against the official SlimRPC plugins
(`agntcy-protoc-slimrpc-plugin`, when `OFFICIAL_SLIMRPC_PLUGIN_DIR` names its
installed `bin/`; `cargo xtask bench plugins` installs it) and protoc-gen-go
(issue 17).

One CodeGeneratorRequest per .proto file with services of the stress corpus and
the real proto sets (what protoc sends a plugin when run once per file), fed to
each plugin binary RUNS times; the CPU time (user + system) the plugin process
spent is read from getrusage, so protoc's own parsing is not counted.

Usage (after `cargo xtask setup` and a release build of the plugins):
    .venv/bin/python testdata/stress/bench_plugins.py [RUNS [FILE_SUBSTRING]]
or `cargo xtask bench plugins`, which does all of it.

A plugin that answers a request with an error (the official one refuses some
of the stress files) is timed all the same; the files it refused are counted
and named.
"""

import glob
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
# Only the files whose name contains this (e.g. `bidi` for the smallest one: start-up cost).
ONLY = sys.argv[2] if len(sys.argv) > 2 else ""


def protoc() -> str:
    p = os.environ.get("SLIMRPC_PROTOC") or os.environ.get("PROTOC")
    if not p:
        sys.exit("set SLIMRPC_PROTOC (cargo xtask test exports it)")
    return p


def sets() -> list[tuple[Path, list[str]]]:
    site = Path(glob.glob(str(ROOT / ".venv/lib/python3*/site-packages"))[0])
    real = Path(os.environ.get("SLIMRPC_REAL_PROTOS", ROOT / ".tools/real-protos"))
    out = []
    for include, sub in [
        (ROOT / "testdata/stress/protos", "stress"),
        (site, "google"),
        (real / "grpc-health-check-2.1.0/package/proto", "health"),
        (real / "grpc-reflection-1.0.4/package/build/proto", "grpc"),
    ]:
        files = sorted(
            str(p.relative_to(include)) for p in (include / sub).rglob("*.proto")
        )
        out.append((include, files))
    return out


def requests() -> list[tuple[str, bytes, bytes, bytes]]:
    """Per file with services: (file, request for our Python and Rust plugins, for our Go
    plugin, for protoc-gen-go); the Go ones carry `M` options for files without
    go_package (ours needs one only for the file it writes)."""
    all_sets = sets()
    includes = [f"-I{i}" for i, _ in all_sets]
    files = [f for _, fs in all_sets for f in fs]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run(
            [protoc(), *includes, f"--descriptor_set_out={out}", "--include_imports",
             "--include_source_info", *files],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    by_name = {f.name: f for f in fds.file}
    result = []
    for f in fds.file:
        if not f.service or f.name not in files or ONLY not in f.name:
            continue
        # The file and its imports, dependencies first (protoc's order).
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            for dep in by_name[name].dependency:
                visit(dep)
            order.append(name)

        visit(f.name)
        mapping = []
        for name in order:
            if not by_name[name].options.go_package:
                mapping.append(f"M{name}=example.com/nogopkg/{name[:-6]}")
        plain = plugin_pb2.CodeGeneratorRequest(
            file_to_generate=[f.name],
            proto_file=[by_name[n] for n in order],
        )
        ours = plugin_pb2.CodeGeneratorRequest(
            file_to_generate=[f.name],
            parameter=",".join(m for m in mapping if m[1:].split("=")[0] == f.name),
            proto_file=[by_name[n] for n in order],
        )
        go = plugin_pb2.CodeGeneratorRequest(
            file_to_generate=[f.name],
            parameter=",".join(mapping),
            proto_file=[by_name[n] for n in order],
        )
        result.append(
            (
                f.name,
                plain.SerializeToString(),
                ours.SerializeToString(),
                go.SerializeToString(),
            )
        )
    return result


def cpu_seconds(binary: str, named: list[tuple[str, bytes]]) -> tuple[float, list[str]]:
    """CPU seconds over RUNS rounds, and the files the plugin failed on."""
    failed: list[str] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for round_ in range(RUNS):
        for name, data in named:
            run = subprocess.run([binary], input=data, capture_output=True)
            ok = run.returncode == 0
            if ok:
                response = plugin_pb2.CodeGeneratorResponse.FromString(run.stdout)
                ok = not response.error
            if not ok and round_ == 0:
                failed.append(name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    secs = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return secs, failed


def main() -> None:
    reqs = requests()
    release = Path(os.environ.get("PLUGIN_DIR", ROOT / "target/release"))
    go_bin = os.environ.get("SLIMRPC_PROTOC_GEN_GO", str(ROOT / ".tools/bin/protoc-gen-go"))
    runs = len(reqs) * RUNS
    print(f"{len(reqs)} files with services, {RUNS} rounds: {runs} plugin runs each")
    print("| plugin | CPU total | per run | files refused |")
    print("|---|---:|---:|---|")
    plugins = [
        ("protoc-gen-slimrpc-python (ours)", release / "protoc-gen-slimrpc-python", 1),
        ("protoc-gen-slimrpc-go (ours)", release / "protoc-gen-slimrpc-go", 2),
        ("protoc-gen-slimrpc-rust (ours)", release / "protoc-gen-slimrpc-rust", 1),
    ]
    official = os.environ.get("OFFICIAL_SLIMRPC_PLUGIN_DIR")
    if official:
        plugins += [
            ("protoc-gen-slimrpc-python (official 3.0.1)", Path(official) / "protoc-gen-slimrpc-python", 1),
            ("protoc-gen-slimrpc-go (official 3.0.1)", Path(official) / "protoc-gen-slimrpc-go", 3),
        ]
    plugins.append(("protoc-gen-go (official, messages)", Path(go_bin), 3))
    for name, binary, which in plugins:
        secs, failed = cpu_seconds(str(binary), [(r[0], r[which]) for r in reqs])
        refused = f"{len(failed)}: {', '.join(failed)}" if failed else "0"
        print(f"| {name} | {secs:.3f} s | {secs / runs * 1000:.2f} ms | {refused} |")


if __name__ == "__main__":
    main()
