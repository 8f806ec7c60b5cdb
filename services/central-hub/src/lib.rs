//! central-hub
