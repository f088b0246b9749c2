//! Shared core of the SlimRPC code generators (not implemented yet).
