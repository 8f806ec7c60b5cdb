//! gleitzeit-protocol
