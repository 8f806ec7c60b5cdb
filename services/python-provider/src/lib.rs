//! python-provider
