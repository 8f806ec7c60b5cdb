//! gleitzeit-hub-client
