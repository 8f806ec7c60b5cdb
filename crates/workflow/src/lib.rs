//! gleitzeit-workflow
