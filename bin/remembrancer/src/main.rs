//! The `remembrancer` binary.
fn main() {}
