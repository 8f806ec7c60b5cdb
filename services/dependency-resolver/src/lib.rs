//! dependency-resolver
