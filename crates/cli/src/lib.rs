//! gleitzeit-cli
