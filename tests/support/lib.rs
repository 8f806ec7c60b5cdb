//! End-to-end test support: starting the real binaries, free ports, kill on drop.
