//! slimrpc: the SlimRPC protocol (point-to-point and Group RPC) over
//! slim-transport sessions.
//!
//! Not implemented yet: see the runtime issue.

#[cfg(test)]
mod tests {
    #[test]
    fn crate_links_against_the_transport() {
        let n = slim_transport::Name::new("agntcy", "grpc", "server");
        assert!(n.has_null_id());
    }
}
