//! `slim`: a standalone SLIM v1.3 data-plane node.

fn main() {
    eprintln!("slim: the node is not implemented yet");
    std::process::exit(2);
}
