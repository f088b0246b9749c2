//! Python naming: module paths of protoc's `_pb2` output, protoc's import aliases, keyword
//! escaping and constant names. Pure string functions; no I/O and no knowledge of templates.

use heck::ToShoutySnakeCase;

/// Python's hard keywords (soft keywords such as `match` are valid attribute names).
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A proto identifier as a Python identifier: keywords get a trailing underscore
/// (`import` → `import_`); the wire name is unaffected.
pub fn escape_keyword(name: &str) -> String {
    if KEYWORDS.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// Dotted module of protoc's Python output for a proto file, with `suffix` (`_pb2`,
/// `_pb2_slimrpc`): `a/v1/My-Service.proto` → `a.v1.My_Service_pb2` (protoc's `ModuleName`).
pub fn module_name(proto_file: &str, suffix: &str) -> String {
    let stem = proto_file.strip_suffix(".proto").unwrap_or(proto_file);
    format!("{}{suffix}", stem.replace('-', "_").replace('/', "."))
}

/// protoc's collision-free alias for an imported module: `_` doubled, `.` → `_dot_`
/// (`a.v1.File_pb2` → `a_dot_v1_dot_File__pb2`).
pub fn module_alias(module: &str) -> String {
    module.replace('_', "__").replace('.', "_dot_")
}

/// Output path of the stubs for a proto file: next to protoc's `_pb2.py`
/// (`a/v1/MyService.proto` → `a/v1/MyService_pb2_slimrpc.py`). Hyphens become underscores
/// as in protoc's own output names.
pub fn output_path(proto_file: &str) -> String {
    let stem = proto_file.strip_suffix(".proto").unwrap_or(proto_file);
    format!("{}_pb2_slimrpc.py", stem.replace('-', "_"))
}

/// `SHOUTY_SNAKE` form used for module constants (`ExampleUnaryUnary` → `EXAMPLE_UNARY_UNARY`).
pub fn constant(name: &str) -> String {
    name.to_shouty_snake_case()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_aliases_follow_protoc() {
        assert_eq!(
            module_name("a/v1/My-Service.proto", "_pb2"),
            "a.v1.My_Service_pb2"
        );
        assert_eq!(
            module_alias("a.v1.My_Service_pb2"),
            "a_dot_v1_dot_My__Service__pb2"
        );
        assert_eq!(module_alias("example_pb2"), "example__pb2");
        assert_eq!(
            output_path("a/v1/MyService.proto"),
            "a/v1/MyService_pb2_slimrpc.py"
        );
    }

    #[test]
    fn keywords_get_a_trailing_underscore_and_soft_keywords_do_not() {
        assert_eq!(escape_keyword("import"), "import_");
        assert_eq!(escape_keyword("None"), "None_");
        assert_eq!(escape_keyword("match"), "match");
        assert_eq!(escape_keyword("get_thing"), "get_thing");
    }

    #[test]
    fn constants_are_shouty_snake_case() {
        assert_eq!(constant("ExampleUnaryUnary"), "EXAMPLE_UNARY_UNARY");
        assert_eq!(constant("get_thing"), "GET_THING");
    }
}
