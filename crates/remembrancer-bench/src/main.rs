//! Benchmark binary.
fn main() {}
