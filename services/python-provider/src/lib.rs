//! python-provider: serves the `python/*` methods; [`pool`] runs them in warm Python workers.

pub mod pool;
