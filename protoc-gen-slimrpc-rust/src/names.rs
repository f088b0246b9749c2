//! Rust names as prost-build spells them, so generated stubs refer to the message types
//! prost generated: identifier sanitising (raw identifiers for keywords), `snake_case`
//! modules and methods, `UpperCamel` types, and the path of a message seen from a package
//! module (`super::other::Msg`, `outer::Inner`, `::prost_types::Timestamp`, `()`).
//!
//! These rules restate prost-build 0.14's documented behaviour; this module must not decide
//! anything SlimRPC-specific (the names of generated items live in `view`).

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use slimrpc_codegen::{CodegenError, ParamError, Parameters, TypeRef};

/// Makes `ident` usable as a Rust identifier the way prost does: keywords become raw
/// identifiers (`r#type`), the keywords that cannot be raw get a `_` suffix (`self_`), and a
/// leading digit gets a `_` prefix.
pub fn sanitize(ident: &str) -> String {
    match ident {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{ident}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_ascii_digit()) => format!("_{ident}"),
        _ => ident.to_string(),
    }
}

/// `snake_case` identifier (modules, methods, fields), sanitized.
pub fn to_snake(s: &str) -> String {
    sanitize(&s.to_snake_case())
}

/// `UpperCamel` identifier (types, traits), sanitized.
pub fn to_upper_camel(s: &str) -> String {
    sanitize(&s.to_upper_camel_case())
}

/// `SHOUTY_SNAKE` constant name (never a keyword).
pub fn to_shouty(s: &str) -> String {
    let c = s.to_shouty_snake_case();
    if c.starts_with(|ch: char| ch.is_ascii_digit()) {
        format!("_{c}")
    } else {
        c
    }
}

/// Proto → Rust path overrides, as prost-build's `extern_path` (plus its built-in mapping of
/// `google.protobuf` to `prost-types` unless well-known types are compiled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternPaths {
    /// (`.proto.path`, `rust::path`), longest proto path wins.
    entries: Vec<(String, String)>,
}

impl Default for ExternPaths {
    fn default() -> Self {
        Self::new(&[], false)
    }
}

impl ExternPaths {
    /// prost-build's table: `user` entries, and unless `compile_well_known_types` the
    /// `google.protobuf` mapping (`::prost_types`, wrapper types to Rust scalars, `Empty` to
    /// `()`).
    pub fn new(user: &[(String, String)], compile_well_known_types: bool) -> Self {
        let mut entries: Vec<(String, String)> = user.to_vec();
        if !compile_well_known_types {
            for (p, r) in [
                (".google.protobuf", "::prost_types"),
                (".google.protobuf.BoolValue", "bool"),
                (
                    ".google.protobuf.BytesValue",
                    "::prost::alloc::vec::Vec<u8>",
                ),
                (".google.protobuf.DoubleValue", "f64"),
                (".google.protobuf.Empty", "()"),
                (".google.protobuf.FloatValue", "f32"),
                (".google.protobuf.Int32Value", "i32"),
                (".google.protobuf.Int64Value", "i64"),
                (
                    ".google.protobuf.StringValue",
                    "::prost::alloc::string::String",
                ),
                (".google.protobuf.UInt32Value", "u32"),
                (".google.protobuf.UInt64Value", "u64"),
            ] {
                if !entries.iter().any(|(k, _)| k == p) {
                    entries.push((p.to_string(), r.to_string()));
                }
            }
        }
        ExternPaths { entries }
    }

    /// From plugin parameters: `extern_path=.proto.path=::rust::path` (repeatable) and
    /// `compile_well_known_types=true|false` (default false), as protoc-gen-prost spells them.
    pub fn from_params(params: &Parameters) -> Result<Self, CodegenError> {
        let mut user = Vec::new();
        for v in params.get_all("extern_path") {
            let Some((proto, rust)) = v.split_once('=') else {
                return Err(ParamError::InvalidValue {
                    key: "extern_path".into(),
                    value: v.into(),
                    expected: "`.proto.path=rust::path`".into(),
                }
                .into());
            };
            let (proto, rust) = (proto.trim(), rust.trim());
            if !proto.starts_with('.') || proto.len() < 2 || rust.is_empty() {
                return Err(ParamError::InvalidValue {
                    key: "extern_path".into(),
                    value: v.into(),
                    expected: "a fully-qualified proto path starting with `.` and a Rust path"
                        .into(),
                }
                .into());
            }
            user.push((proto.to_string(), rust.to_string()));
        }
        let wkt = params.get_bool("compile_well_known_types", false)?;
        Ok(Self::new(&user, wkt))
    }

    fn get(&self, proto: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == proto)
            .map(|(_, v)| v.as_str())
    }

    /// The Rust path of `.a.b.Msg` if an entry covers it: an exact entry, or the longest
    /// prefix entry followed by the remaining segments (modules `snake_case`, the type
    /// `UpperCamel`).
    pub fn resolve(&self, proto: &str) -> Option<String> {
        if let Some(r) = self.get(proto) {
            return Some(r.to_string());
        }
        for (idx, _) in proto.rmatch_indices('.') {
            if let Some(rust) = self.get(&proto[..idx]) {
                let mut rest: Vec<&str> = proto[idx + 1..].split('.').collect();
                let ty = rest.pop().map(to_upper_camel).unwrap_or_default();
                let mut parts: Vec<String> = Vec::new();
                for (i, seg) in rust.split("::").enumerate() {
                    if (i == 0 && seg == "crate") || seg.is_empty() {
                        parts.push(seg.to_string());
                    } else {
                        parts.push(to_snake(seg));
                    }
                }
                parts.extend(rest.into_iter().map(to_snake));
                parts.push(ty);
                return Some(parts.join("::"));
            }
        }
        None
    }
}

/// The path of message `ty` as written inside the module of proto package `package`
/// (prost-build's layout: one module per package component, one per message with nested
/// types): `Msg`, `outer::Inner`, `super::b::v1::Shared`, or an extern path.
pub fn message_path(ty: &TypeRef, package: &str, externs: &ExternPaths) -> String {
    let fq = format!(".{}", ty.full_name);
    if let Some(p) = externs.resolve(&fq) {
        return p;
    }
    let local: Vec<&str> = package.split('.').filter(|s| !s.is_empty()).collect();
    let mut target: Vec<&str> = ty.package.split('.').filter(|s| !s.is_empty()).collect();
    target.extend(ty.nested_path.iter().map(String::as_str));
    let Some((name, modules)) = target.split_last() else {
        return String::new();
    };
    let common = local
        .iter()
        .zip(modules.iter())
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["super".to_string(); local.len() - common];
    parts.extend(modules[common..].iter().map(|m| to_snake(m)));
    parts.push(to_upper_camel(name));
    parts.join("::")
}

/// Whether a path from [`message_path`] (or prost-build) is relative to the package module,
/// so code one module deeper must prefix it with `super::`. Absolute paths (`::x`,
/// `crate::x`), `()` and Rust scalars are not.
pub fn is_relative(path: &str) -> bool {
    !(path.starts_with("::")
        || path.starts_with("crate::")
        || path.starts_with('(')
        || matches!(path, "bool" | "f32" | "f64" | "i32" | "i64" | "u32" | "u64"))
}

/// The output file of a package, named as prost-build names the package's file (module
/// names joined by `.`): `a.b.slimrpc.rs`, `google.r#type.slimrpc.rs`, `_.slimrpc.rs` without
/// a package.
pub fn output_file(package: &str) -> String {
    if package.is_empty() {
        "_.slimrpc.rs".to_string()
    } else {
        let modules: Vec<String> = package.split('.').map(to_snake).collect();
        format!("{}.slimrpc.rs", modules.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimrpc_codegen::TypeKind;

    fn tref(package: &str, nested: &[&str]) -> TypeRef {
        let rel = nested.join(".");
        TypeRef {
            full_name: if package.is_empty() {
                rel
            } else {
                format!("{package}.{rel}")
            },
            package: package.into(),
            file: "x.proto".into(),
            nested_path: nested.iter().map(|s| s.to_string()).collect(),
            kind: TypeKind::Message,
        }
    }

    #[test]
    fn keywords_become_raw_identifiers_or_get_a_suffix() {
        assert_eq!(to_snake("Match"), "r#match");
        assert_eq!(to_snake("type"), "r#type");
        assert_eq!(to_snake("Self"), "self_");
        assert_eq!(to_upper_camel("self"), "Self_");
        assert_eq!(to_snake("GetThing"), "get_thing");
        assert_eq!(to_shouty("get_thing"), "GET_THING");
    }

    #[test]
    fn paths_are_relative_to_the_package_module_as_prost_writes_them() {
        let x = ExternPaths::default();
        assert_eq!(message_path(&tref("a.v1", &["Msg"]), "a.v1", &x), "Msg");
        assert_eq!(
            message_path(&tref("a.v1", &["Outer", "Inner"]), "a.v1", &x),
            "outer::Inner"
        );
        assert_eq!(
            message_path(&tref("b.v1", &["Shared"]), "a.v1", &x),
            "super::super::b::v1::Shared"
        );
        assert_eq!(
            message_path(&tref("google.type", &["Date"]), "g.v1", &x),
            "super::super::google::r#type::Date"
        );
        assert_eq!(message_path(&tref("", &["Bare"]), "", &x), "Bare");
        assert_eq!(message_path(&tref("a", &["M"]), "", &x), "a::M");
        assert_eq!(message_path(&tref("", &["M"]), "a", &x), "super::M");
    }

    #[test]
    fn well_known_types_map_to_prost_types_unless_compiled() {
        let x = ExternPaths::default();
        assert_eq!(
            message_path(&tref("google.protobuf", &["Timestamp"]), "p", &x),
            "::prost_types::Timestamp"
        );
        assert_eq!(
            message_path(&tref("google.protobuf", &["Empty"]), "p", &x),
            "()"
        );
        assert_eq!(
            message_path(&tref("google.protobuf", &["StringValue"]), "p", &x),
            "::prost::alloc::string::String"
        );
        let compiled = ExternPaths::new(&[], true);
        assert_eq!(
            message_path(&tref("google.protobuf", &["Empty"]), "p", &compiled),
            "super::google::protobuf::Empty"
        );
    }

    #[test]
    fn user_extern_paths_win_and_extend_with_nested_segments() {
        let x = ExternPaths::new(&[(".b.v1".into(), "::common::b".into())], false);
        assert_eq!(
            message_path(&tref("b.v1", &["Shared", "Nested"]), "a.v1", &x),
            "::common::b::shared::Nested"
        );
        assert!(!is_relative("::common::b::X"));
        assert!(!is_relative("()"));
        assert!(!is_relative("i64"));
        assert!(is_relative("super::X"));
        assert!(is_relative("X"));
    }
}
