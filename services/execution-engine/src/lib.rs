//! execution-engine
