//! The one list of identifiers the generated Go declares: package-level names per service and
//! per method (checked for collisions with protoc-gen-go's message types and between
//! services, and kept away from import names) and the locals the template declares inside
//! functions (an import named like one would be shadowed). A unit test compares these lists
//! with the declarations in `templates/go/file.go.txt`, so they cannot drift apart.

use crate::naming::unexport;

/// Local identifiers the template declares inside functions.
pub const TEMPLATE_LOCALS: &[&str] = &[
    "c",
    "cancel",
    "channel",
    "ctx",
    "deadline",
    "err",
    "h",
    "in",
    "md",
    "metadata",
    "ok",
    "out",
    "payload",
    "reader",
    "remaining",
    "reply",
    "request",
    "rpcContext",
    "rpcErr",
    "server",
    "sink",
    "srv",
    "stream",
    "t",
    "timeout",
    "writer",
];

/// Package-level identifiers of the group reducers file, declared once per Go package that
/// has a service with methods (`templates/go/reducers.go.txt`). Prefixed with `Slimrpc` /
/// `slimrpc` so that they do not meet protoc-gen-go's names (a message would have to be
/// named exactly like one; that is reported as a collision).
pub const REDUCER_IDENTIFIERS: &[&str] = &[
    "SlimrpcFirstResponse",
    "SlimrpcFoldResponses",
    "SlimrpcMajority",
    "SlimrpcQuorum",
    "SlimrpcReduceError",
    "slimrpcMemberOf",
    "slimrpcSourceOf",
    "slimrpcStopSending",
];

/// Package-level identifiers declared for the service whose Go name is `go` (the helper
/// functions only for the first service with methods of its file; reserved for all).
pub fn service_identifiers(go: &str) -> Vec<String> {
    let lower = unexport(go);
    vec![
        format!("{go}_ServiceName"),
        format!("{go}Client"),
        format!("{lower}Client"),
        format!("New{go}Client"),
        format!("{go}GroupClient"),
        format!("{lower}GroupClient"),
        format!("New{go}GroupClient"),
        format!("{go}Server"),
        format!("Unimplemented{go}Server"),
        format!("Unsafe{go}Server"),
        format!("Register{go}Server"),
        format!("_{go}_callOptions"),
        format!("_{go}_toRpcError"),
    ]
}

/// Package-level identifiers declared for method `method` (Go name) of service `go`.
pub fn method_identifiers(go: &str, method: &str) -> Vec<String> {
    vec![
        format!("{go}_{method}_MethodName"),
        format!("_{go}_{method}_Handler"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Names after `type`, `const`, `var` or `func` (not methods) at the start of a line.
    fn declarations(template: &str) -> BTreeSet<String> {
        template
            .lines()
            .filter_map(|l| {
                let rest = l
                    .strip_prefix("type ")
                    .or_else(|| l.strip_prefix("const "))
                    .or_else(|| l.strip_prefix("var "))
                    .or_else(|| l.strip_prefix("func ").filter(|r| !r.starts_with('(')))?;
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                Some(rest[..end].to_string())
            })
            .collect()
    }

    #[test]
    fn the_reducer_list_names_exactly_the_declarations_of_the_reducers_template() {
        let declared = declarations(include_str!("../../templates/go/reducers.go.txt"));
        let listed: BTreeSet<String> = REDUCER_IDENTIFIERS.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared, listed);
    }

    #[test]
    fn the_lists_name_exactly_the_package_level_declarations_of_the_template() {
        let template = include_str!("../../templates/go/file.go.txt")
            .replace("{{ s.go_name }}", "Svc")
            .replace("{{ s.lower }}", "svc")
            .replace("{{ m.go_name }}", "Mth")
            .replace("{{ helper_prefix }}", "Svc");
        let declared = declarations(&template);
        let listed: BTreeSet<String> = service_identifiers("Svc")
            .into_iter()
            .chain(method_identifiers("Svc", "Mth"))
            .collect();
        assert_eq!(declared, listed);
    }
}
