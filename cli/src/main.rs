//! The `vigil` command, the single entry point users type.

fn main() {}
