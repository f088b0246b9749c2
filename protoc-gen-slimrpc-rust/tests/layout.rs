//! Output stays rustfmt-clean when names are long enough to push every construct past
//! rustfmt's width limits (signatures, return types, stream parameters, constants, `use`,
//! `impl` headers, handler chains): a proto written for that, through real protoc.

mod common;

use std::process::Command;

use common::*;

#[test]
fn very_long_names_still_give_rustfmt_clean_output() {
    let data = root().join("protoc-gen-slimrpc-rust/tests/data/long_names");
    let out = scratch("long-names");
    let run = Command::new(slimrpc_testkit::protoc())
        .arg(format!("-I{}", data.display()))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-rust={}",
            plugin().display()
        ))
        .arg(format!("--slimrpc-rust_out={}", out.display()))
        .arg("long.proto")
        .output()
        .expect("run protoc");
    assert_ok("protoc", &run);
    let files = read_outputs(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let (name, text) = files.iter().next().expect("one file");
    // Every layout branch is exercised.
    for needle in [
        "    use super::an_exceedingly_verbose_service_name_for_layout_testing_server::{\n",
        "        ) -> Result<super::m::AnotherQuiteLongNestedResponseMessageName, slimrpc::RpcError>\n        {\n",
        "            > + Send\n            + 'static,\n",
        "        ) -> impl Future<\n",
        "            requests: slimrpc::RequestStream<\n",
        ": &str =\n            \"AMethodWithAnAbsurdlyLongNameThatKeepsGoingAndGoingOnAndOn\";",
        "        let method =\n",
        "    impl<T: AnExceedinglyVerboseServiceNameForLayoutTesting>\n",
        "                            request, context,\n",
    ] {
        assert!(text.contains(needle), "{name} lacks {needle:?}");
    }
    let check = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .arg(out.join(name))
        .output()
        .expect("run rustfmt");
    assert_ok("rustfmt --check", &check);
}
