#!/usr/bin/env python3
"""Writes the stress corpus of issue 17 under testdata/stress/protos/.

Run once (`python3 testdata/stress/generate.py`); the committed .proto files are
the corpus, this script only documents how they were made. The protos import
googleapis-common-protos (google/type, google/rpc, google/api,
google/longrunning) and the well-known types, so the include path is protoc's
own plus the site-packages of the project venv.
"""

from pathlib import Path

OUT = Path(__file__).resolve().parent / "protos" / "stress"

HEADER = 'syntax = "proto3";\n\n'


def ident(prefix: str, length: int) -> str:
    """A CamelCase identifier of exactly `length` characters starting with `prefix`."""
    words = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]
    s = prefix
    i = 0
    while len(s) < length:
        s += words[i % len(words)]
        i += 1
    return s[:length]


def write(rel: str, text: str) -> None:
    p = OUT / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def go_pkg(rel_dir: str, name: str) -> str:
    return f'option go_package = "example.com/stress/{rel_dir};{name}";\n'


SHAPES = [
    ("{0}", "{0}"),
    ("stream {0}", "{0}"),
    ("{0}", "stream {0}"),
    ("stream {0}", "stream {0}"),
]


def names() -> None:
    """Services, methods and messages of 10 to 120 characters, all four shapes."""
    out = HEADER + "package stress.names.v1;\n\n" + go_pkg("names/v1", "namesv1") + "\n"
    out += "message Ping {\n  string text = 1;\n}\n\n"
    for length in (10, 40, 80, 120):
        msg = ident("Msg", length)
        out += f"message {msg} {{\n  string value = 1;\n}}\n\n"
    for length in (10, 25, 40, 60, 80, 100, 120):
        svc = ident("Svc", length)
        out += f"// Service whose name is {length} characters long.\nservice {svc} {{\n"
        for mlen in (10, 40, 80, 120):
            for i, (req, resp) in enumerate(SHAPES):
                m = ident(f"M{i}", mlen)
                msg = ident("Msg", mlen) if mlen != 10 or True else "Ping"
                out += f"  rpc {m}({req.format(msg)}) returns ({resp.format(msg)});\n"
        out += "}\n\n"
    write("names/v1/names.proto", out)


# (import, message) pairs from googleapis-common-protos and the WKT.
IMPORTS = [
    ("google/protobuf/any.proto", "google.protobuf.Any"),
    ("google/protobuf/api.proto", "google.protobuf.Api"),
    ("google/protobuf/duration.proto", "google.protobuf.Duration"),
    ("google/protobuf/empty.proto", "google.protobuf.Empty"),
    ("google/protobuf/field_mask.proto", "google.protobuf.FieldMask"),
    ("google/protobuf/source_context.proto", "google.protobuf.SourceContext"),
    ("google/protobuf/struct.proto", "google.protobuf.Struct"),
    ("google/protobuf/timestamp.proto", "google.protobuf.Timestamp"),
    ("google/protobuf/type.proto", "google.protobuf.Type"),
    ("google/protobuf/wrappers.proto", "google.protobuf.StringValue"),
    ("google/type/color.proto", "google.type.Color"),
    ("google/type/date.proto", "google.type.Date"),
    ("google/type/datetime.proto", "google.type.DateTime"),
    ("google/type/decimal.proto", "google.type.Decimal"),
    ("google/type/expr.proto", "google.type.Expr"),
    ("google/type/fraction.proto", "google.type.Fraction"),
    ("google/type/interval.proto", "google.type.Interval"),
    ("google/type/latlng.proto", "google.type.LatLng"),
    ("google/type/localized_text.proto", "google.type.LocalizedText"),
    ("google/type/money.proto", "google.type.Money"),
    ("google/type/phone_number.proto", "google.type.PhoneNumber"),
    ("google/type/postal_address.proto", "google.type.PostalAddress"),
    ("google/type/quaternion.proto", "google.type.Quaternion"),
    ("google/type/timeofday.proto", "google.type.TimeOfDay"),
    ("google/rpc/status.proto", "google.rpc.Status"),
    ("google/rpc/error_details.proto", "google.rpc.ErrorInfo"),
    ("google/rpc/http.proto", "google.rpc.HttpRequest"),
    ("google/rpc/context/attribute_context.proto", "google.rpc.context.AttributeContext"),
    ("google/api/httpbody.proto", "google.api.HttpBody"),
    ("google/api/label.proto", "google.api.LabelDescriptor"),
    ("google/api/monitored_resource.proto", "google.api.MonitoredResource"),
    ("google/api/distribution.proto", "google.api.Distribution"),
    ("google/longrunning/operations_proto.proto", "google.longrunning.Operation"),
]


def imports() -> None:
    """One service using 33 imported files, in a package with a long dotted name."""
    pkg = "stress.imports.very_long_package_segment_for_wrapping.another_rather_long_segment.v1"
    out = HEADER + f"package {pkg};\n\n"
    out += go_pkg("imports/v1", "importsv1") + "\n"
    for imp, _ in IMPORTS:
        out += f'import "{imp}";\n'
    out += "\n// Every method takes and returns a message of another file.\nservice ManyImports {\n"
    n = len(IMPORTS)
    for i, (_, msg) in enumerate(IMPORTS):
        other = IMPORTS[(i + 1) % n][1]
        req, resp = SHAPES[i % 4]
        name = "Use" + msg.rsplit(".", 1)[1]
        out += f"  rpc {name}({req.format('.' + msg)}) returns ({resp.format('.' + other)});\n"
    out += "}\n"
    write("imports/v1/imports.proto", out)


def nesting() -> None:
    """Requests and responses nested six levels deep, and a second file using them."""
    out = HEADER + "package stress.nesting.v1;\n\n" + go_pkg("nesting/v1", "nestingv1") + "\n"
    depth = 6
    for d in range(depth):
        out += "  " * d + f"message Level{d}{ident('N', 20)} {{\n"
        out += "  " * (d + 1) + "string value = 1;\n"
        out += "  " * (d + 1) + f"enum Kind{d} {{\n"
        out += "  " * (d + 2) + f"KIND{d}_UNSPECIFIED = 0;\n"
        out += "  " * (d + 1) + "}\n"
    for d in reversed(range(depth)):
        out += "  " * d + "}\n"
    path = ".".join(f"Level{d}{ident('N', 20)}" for d in range(depth))
    out += "\nservice Nesting {\n"
    for d in range(1, depth + 1):
        inner = ".".join(f"Level{x}{ident('N', 20)}" for x in range(d))
        req, resp = SHAPES[d % 4]
        out += f"  rpc Depth{d}({req.format(inner)}) returns ({resp.format(path)});\n"
    out += "}\n"
    write("nesting/v1/nesting.proto", out)
    user = HEADER + "package stress.nesting.user.v1;\n\n"
    user += go_pkg("nesting/user/v1", "userv1") + "\n"
    user += 'import "stress/nesting/v1/nesting.proto";\n\n'
    user += "service NestedFromAnotherPackage {\n"
    user += f"  rpc Deep(stress.nesting.v1.{path}) returns (stream .stress.nesting.v1.{path});\n"
    user += "}\n"
    write("nesting/user/v1/user.proto", user)


COMMENT_SERVICE = """\
// A service whose comments have every shape we met in real APIs.
//
// Lists:
// - first item
// - second item whose text is long enough that a human wrapped it onto the next
// line without indenting the continuation
//   * nested star item
//     continued, indented
// 1. numbered
// 2) numbered with a parenthesis
//
// Code, indented and fenced:
//
//     for x in range(3):
//         print(x)
//
// ```
// fn main() { println!("{}", 1); }
// ```
//
// Trailing whitespace here:   \t
// Tabs\tinside and a backslash \\ and a quote " and '
// Closing a C comment */ and opening one /* here.
// Triple quotes \"\"\" and ''' and a docstring end \"\"\"
// Non-ASCII: café, naïve, 日本語, Ελληνικά, emoji 🚀, a non-breaking space\u00a0here.
// Markup: <b>bold</b> &amp; [link](https://example.com) `code` {{ braces }} {% jinja %}
// # a hash at the start
// /// three slashes and //! inner doc
//
//
// Two blank lines above, and a very long line that goes on and on and on well beyond eighty-eight and one hundred characters without any break at all.
service Commented {
  // - a method comment that starts with a list item
  //   continued with indentation
  // - and a second item
  // after the list, a lazy line.
  rpc ListFirst(Item) returns (Item);

  // Paragraph one.
  //
  // Paragraph two, after a blank comment line.
  //
  //
  // Paragraph three, after two.
  rpc Paragraphs(stream Item) returns (Item);

  //    Leading spaces in every line
  //    of this comment.
  rpc Indented(Item) returns (stream Item);

  /* A block comment
   * with stars on each line
   * and a * / lookalike */
  rpc Block(stream Item) returns (stream Item);

  // Ends with a backslash \\
  rpc Backslash(Item) returns (Item);

  //
  rpc EmptyComment(Item) returns (Item);

  // \"\"\"
  rpc OnlyTripleQuotes(Item) returns (Item);

  // 1. only
  // 2. a list
  rpc OnlyAList(Item) returns (Item) {
    option deprecated = true;
  }
}

// Deprecated, with a trailing-whitespace comment.   
service DeprecatedCommented {
  option deprecated = true;
  // A "quoted" name and an 'apostrophe'.
  rpc Quoted(Item) returns (Item);
}
"""


def comments() -> None:
    out = HEADER + "// Detached file comment.\n\npackage stress.comments.v1;\n\n"
    out += go_pkg("comments/v1", "commentsv1") + "\n"
    out += "message Item {\n  string text = 1;\n}\n\n" + COMMENT_SERVICE
    write("comments/v1/comments.proto", out)


KEYWORDS = [
    # Python, Go and Rust keywords and builtins, and names our stubs use.
    "Type", "Self", "Super", "Crate", "Async", "Await", "Match", "Import", "Return", "Class",
    "None", "True", "Func", "Go", "Select", "Chan", "Defer", "Map", "Struct", "Interface",
    "Close", "Context", "Ctx", "Request", "Response", "Error", "Err", "Stream",
    "Server", "Client", "Stub", "Servicer", "Register", "Metadata", "Timeout", "Deadline",
    "Proto", "Fmt", "Errors", "Typing", "Final", "Any", "Option", "Result", "Box", "Pin",
    "String", "Vec", "Future", "Send", "Sync", "Unpin", "Arc", "Mut", "Ref", "Impl", "Dyn",
    "Where", "Loop", "Unsafe", "Static", "Const", "Trait", "Enum", "Mod", "Pub", "Use",
    "Yield", "Lambda", "Global", "Nonlocal", "Del", "Pass", "Raise", "Assert", "With", "From",
    "Range", "Package", "Var", "Default", "Goto", "Fallthrough", "Break", "Continue",
]


def keywords() -> None:
    """Method and service names that are keywords or helper names in the targets."""
    out = HEADER + "package stress.keywords.v1;\n\n" + go_pkg("keywords/v1", "keywordsv1") + "\n"
    out += "message Word {\n  string text = 1;\n}\n\n"
    out += "service Keywords {\n"
    for i, k in enumerate(KEYWORDS):
        req, resp = SHAPES[i % 4]
        out += f"  rpc {k}({req.format('Word')}) returns ({resp.format('Word')});\n"
    out += "}\n\n"
    for k in ("Server", "Client", "Channel", "Unimplemented", "Type", "Service"):
        out += f"service {k} {{\n  rpc Call(Word) returns (Word);\n}}\n\n"
    out += "service snake_case_service_name {\n  rpc snake_case_method(Word) returns (Word);\n"
    out += "  rpc UPPER_CASE_METHOD(Word) returns (Word);\n}\n"
    write("keywords/v1/keywords.proto", out.rstrip("\n") + "\n")


def many_services() -> None:
    """Twelve services in one file: helpers must not repeat per service."""
    out = HEADER + "package stress.many.v1;\n\n" + go_pkg("many/v1", "manyv1") + "\n"
    out += "message Req {\n  string text = 1;\n}\n\nmessage Resp {\n  string text = 1;\n}\n\n"
    for s in range(12):
        out += f"service Many{s:02} {{\n"
        for i, (req, resp) in enumerate(SHAPES):
            out += f"  rpc Call{i}({req.format('Req')}) returns ({resp.format('Resp')});\n"
        out += "}\n\n"
    write("many/v1/many.proto", out.rstrip("\n") + "\n")


def no_go_package() -> None:
    """A file without services and without go_package, imported by a service file that
    does not use its messages in any method: no plugin should need its Go import path."""
    write(
        "nogo/v1/fields.proto",
        HEADER + "package stress.nogo.v1;\n\nmessage OnlyAField {\n  string text = 1;\n}\n",
    )
    out = HEADER + "package stress.nogo.user.v1;\n\n" + go_pkg("nogo/user/v1", "nogouserv1")
    out += '\nimport "stress/nogo/v1/fields.proto";\n\n'
    out += "message Holder {\n  stress.nogo.v1.OnlyAField field = 1;\n}\n\n"
    out += "service UsesHolder {\n  rpc Get(Holder) returns (Holder);\n}\n"
    write("nogo/user/v1/user.proto", out)


def streaming_only() -> None:
    """Only streaming methods, and only one method; and a service with no methods."""
    out = HEADER + "package stress.shapes.v1;\n\n" + go_pkg("shapes/v1", "shapesv1") + "\n"
    out += "message Chunk {\n  bytes data = 1;\n}\n\n"
    out += "service OnlyBidi {\n  rpc Chat(stream Chunk) returns (stream Chunk);\n}\n\n"
    out += "service OnlyClientStream {\n  rpc Upload(stream Chunk) returns (Chunk);\n}\n\n"
    out += "service OnlyServerStream {\n  rpc Download(Chunk) returns (stream Chunk);\n}\n\n"
    out += "service NoMethods {}\n"
    write("shapes/v1/shapes.proto", out)
    # Only bidi-streaming methods: the Go file marshals nothing itself.
    out = HEADER + "package stress.bidi.v1;\n\n" + go_pkg("bidi/v1", "bidiv1") + "\n"
    out += "message Frame {\n  bytes data = 1;\n}\n\n"
    out += "service OnlyBidiMethods {\n"
    out += "  rpc Chat(stream Frame) returns (stream Frame);\n"
    out += "  rpc Mirror(stream Frame) returns (stream Frame);\n}\n"
    write("bidi/v1/bidi.proto", out)


def sweep() -> None:
    """Every name length from 50 to 100, one service per length: where the formatters
    switch layouts (88 columns for ruff, 100 for rustfmt and gofmt's one-line bodies) is
    crossed one character at a time."""
    out = HEADER + "package stress.sweep.v1;\n\n" + go_pkg("sweep/v1", "sweepv1") + "\n"
    for length in range(50, 101):
        out += f"message {ident('T', length)} {{\n  string value = 1;\n}}\n\n"
    for length in range(50, 101):
        msg = ident("T", length)
        out += f"service {ident('S', length)} {{\n"
        for i, (req, resp) in enumerate(SHAPES):
            m = ident(f"R{i}", length - 10)
            out += f"  rpc {m}({req.format(msg)}) returns ({resp.format(msg)});\n"
        out += "}\n\n"
    write("sweep/v1/sweep.proto", out.rstrip("\n") + "\n")


def main() -> None:
    names()
    sweep()
    imports()
    nesting()
    comments()
    keywords()
    many_services()
    no_go_package()
    streaming_only()


if __name__ == "__main__":
    main()
