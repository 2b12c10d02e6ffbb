//! What the targets share: the example registry the signed formats are checked under.

use std::sync::OnceLock;

use remembrancer_core::registry::Registry;

/// The example registry (`configs/registry.example.yaml`), parsed once.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::from_yaml(include_str!("../../configs/registry.example.yaml"))
            .expect("the example registry is valid")
    })
}
