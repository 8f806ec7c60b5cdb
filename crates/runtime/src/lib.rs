//! gleitzeit-runtime
