//! queue-manager
