//! ollama-provider
