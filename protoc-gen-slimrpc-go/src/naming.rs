//! Go identifier rules, exactly as protoc-gen-go (`internal/strs`, `protogen`) applies them, so
//! that the names we emit match the message types protoc-gen-go generates beside our file.
//!
//! Pure string functions; nothing here knows about descriptors or files.

/// Go keywords (the spec's 25).
const GO_KEYWORDS: &[&str] = &[
    "break",
    "case",
    "chan",
    "const",
    "continue",
    "default",
    "defer",
    "else",
    "fallthrough",
    "for",
    "func",
    "go",
    "goto",
    "if",
    "import",
    "interface",
    "map",
    "package",
    "range",
    "return",
    "select",
    "struct",
    "switch",
    "type",
    "var",
];

/// Go's predeclared identifiers (universe scope); protogen never uses them as import names.
pub const GO_PREDECLARED: &[&str] = &[
    "any",
    "append",
    "bool",
    "byte",
    "cap",
    "clear",
    "close",
    "comparable",
    "complex",
    "complex128",
    "complex64",
    "copy",
    "delete",
    "error",
    "false",
    "float32",
    "float64",
    "imag",
    "int",
    "int16",
    "int32",
    "int64",
    "int8",
    "iota",
    "len",
    "make",
    "max",
    "min",
    "new",
    "nil",
    "panic",
    "print",
    "println",
    "real",
    "recover",
    "rune",
    "string",
    "true",
    "uint",
    "uint16",
    "uint32",
    "uint64",
    "uint8",
    "uintptr",
];

/// Whether `s` is a Go keyword.
pub fn is_go_keyword(s: &str) -> bool {
    GO_KEYWORDS.contains(&s)
}

/// protoc-gen-go's `strs.GoCamelCase`: `foo_bar` → `FooBar`, `Outer.Inner` → `Outer_Inner`,
/// `_x` → `XX`, `get_thing` → `GetThing`. Works on bytes like the original (ASCII rules only).
pub fn go_camel_case(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 1);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next_lower = i + 1 < b.len() && b[i + 1].is_ascii_lowercase();
        if c == b'.' && next_lower {
            // Skip over '.' in ".{{lowercase}}".
        } else if c == b'.' {
            out.push(b'_');
        } else if c == b'_' && (i == 0 || b[i - 1] == b'.') {
            // An initial '_' (or one after '.') becomes 'X' so the name starts upper case.
            out.push(b'X');
        } else if c == b'_' && next_lower {
            // Skip over '_' in "_{{lowercase}}".
        } else if c.is_ascii_digit() {
            out.push(c);
        } else {
            // A new word: upper-case its first letter and keep the lower-case run after it.
            out.push(c.to_ascii_uppercase());
            while i + 1 < b.len() && b[i + 1].is_ascii_lowercase() {
                i += 1;
                out.push(b[i]);
            }
        }
        i += 1;
    }
    // Only ASCII bytes were changed, so the result is as valid UTF-8 as the input.
    String::from_utf8(out).unwrap_or_default()
}

/// protoc-gen-go's `strs.GoSanitized`: every rune that is not a letter or digit becomes `_`;
/// a leading `_` is added for keywords and names not starting with a letter.
pub fn go_sanitized(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|r| {
            if r.is_alphabetic() || r.is_numeric() {
                r
            } else {
                '_'
            }
        })
        .collect();
    let starts_with_letter = mapped.chars().next().is_some_and(|r| r.is_alphabetic());
    if is_go_keyword(&mapped) || !starts_with_letter {
        format!("_{mapped}")
    } else {
        mapped
    }
}

/// protogen's `cleanPackageName`.
pub fn clean_package_name(name: &str) -> String {
    go_sanitized(name)
}

/// `path.Base` of a `/`-separated path, as Go defines it (`""` → `.`, trailing slashes ignored).
pub fn path_base(p: &str) -> &str {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return if p.is_empty() { "." } else { "/" };
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// protogen's `splitImportPathAndPackageName`: `path;name` → (`path`, `name`).
pub fn split_import_path_and_package_name(s: &str) -> (&str, &str) {
    match s.find(';') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Lower-cases the first letter (grpc-go's `unexport`): `Test` → `test`.
pub fn unexport(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_camel_case_matches_protoc_gen_go() {
        let cases = [
            ("one", "One"),
            ("one_two", "OneTwo"),
            ("_my_field_name_2", "XMyFieldName_2"),
            ("Something_Capped", "Something_Capped"),
            ("my_Name", "My_Name"),
            ("OneTwo", "OneTwo"),
            ("_", "X"),
            ("_a_", "XA_"),
            ("one.two", "OneTwo"),
            ("one.Two", "One_Two"),
            ("one_two.three_four", "OneTwoThreeFour"),
            ("one_two.Three_four", "OneTwo_ThreeFour"),
            ("_one._two", "XOne_XTwo"),
            ("SCREAMING_SNAKE_CASE", "SCREAMING_SNAKE_CASE"),
            ("camelCase", "CamelCase"),
            ("go2proto", "Go2Proto"),
            ("get_thing", "GetThing"),
            ("Outer.Inner", "Outer_Inner"),
            ("import", "Import"),
        ];
        for (input, want) in cases {
            assert_eq!(go_camel_case(input), want, "GoCamelCase({input:?})");
        }
    }

    #[test]
    fn go_sanitized_prefixes_keywords_and_non_letters() {
        assert_eq!(go_sanitized("foo-bar"), "foo_bar");
        assert_eq!(go_sanitized("foo.bar"), "foo_bar");
        assert_eq!(go_sanitized("type"), "_type");
        assert_eq!(go_sanitized("1abc"), "_1abc");
        assert_eq!(go_sanitized("v1"), "v1");
        assert_eq!(go_sanitized(""), "_");
    }

    #[test]
    fn path_base_follows_go_path_base() {
        assert_eq!(path_base("example.com/a/v1"), "v1");
        assert_eq!(path_base("example.com/a/v1/"), "v1");
        assert_eq!(path_base("foo"), "foo");
        assert_eq!(path_base(""), ".");
    }

    #[test]
    fn go_package_splits_on_the_first_semicolon() {
        assert_eq!(
            split_import_path_and_package_name("example.com/x;xpb"),
            ("example.com/x", "xpb")
        );
        assert_eq!(
            split_import_path_and_package_name("example.com/x"),
            ("example.com/x", "")
        );
        assert_eq!(split_import_path_and_package_name(";p"), ("", "p"));
    }
}
