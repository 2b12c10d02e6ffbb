//! The operator's CLI as the spec writes it, on three real node processes: the node found from
//! `--data-dir`, `$REMEMBRANCER_DATA_DIR` or the default data directory (an error naming all
//! three when none holds a running node); `propagate-anchor namespace:kind:name`; a namespace
//! the node does not own refused with the list of its own unless `--create` is given.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{exe, namespace, Cluster};

/// Runs the CLI as a user types it: no `--data-dir` added, `REMEMBRANCER_DATA_DIR` as given
/// (none: unset), and `home` as the home directory (the default data directory is under it).
fn typed(args: &[&str], data_dir_variable: Option<&Path>, home: &Path) -> (bool, String) {
    let mut command = Command::new(exe());
    command.args(args).env_remove("REMEMBRANCER_DATA_DIR").env_remove("XDG_DATA_HOME").env("HOME", home);
    if let Some(dir) = data_dir_variable {
        command.env("REMEMBRANCER_DATA_DIR", dir);
    }
    let output = command.output().expect("run the CLI");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn the_spec_cli_lines_work_as_written_and_a_namespace_typo_starts_nothing() {
    let cluster = Cluster::connected(3);
    let home = tempfile::tempdir().expect("home");
    let node1 = cluster.data_dir(1);

    // No flag, no variable, an empty default: the error names all three.
    let (ok, text) = typed(&["federation", "status"], None, home.path());
    assert!(!ok, "{text}");
    for named in ["--data-dir", "REMEMBRANCER_DATA_DIR", ".local/share/remembrancer", "node run"] {
        assert!(text.contains(named), "the error names {named}: {text}");
    }

    // `remembrancer federation status`, the node found from the variable.
    let (ok, text) = typed(&["federation", "status"], Some(&node1), home.path());
    assert!(ok, "{text}");
    assert!(text.contains("did:vm:node:dev1"), "{text}");

    // ... and from the default data directory, when that is where the node's data lives.
    let default = home.path().join(".local/share/remembrancer");
    std::fs::create_dir_all(&default).expect("default data directory");
    for file in ["api.json", "api.token"] {
        std::fs::copy(node1.join(file), default.join(file)).expect("copy the node's API files");
    }
    let (ok, text) = typed(&["federation", "status", "--json"], None, home.path());
    assert!(ok, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(status["did"], "did:vm:node:dev1");

    // `remembrancer federation propagate-anchor namespace:dev:node1`: the spec's prefix names
    // the namespace dev:node1, which gets a checkpoint and becomes final.
    let size = cluster.append(1, "before the anchor");
    let (ok, text) =
        typed(&["federation", "propagate-anchor", "namespace:dev:node1"], Some(&node1), home.path());
    assert!(ok, "{text}");
    assert!(text.starts_with("dev:node1: checkpoint at size"), "{text}");
    cluster.wait("dev:node1 final on node 2", Duration::from_secs(30), |c| {
        c.final_size(2, &namespace(1)) >= size
    });
    let namespaces = cluster.status(1)["namespaces"].to_string();
    assert!(!namespaces.contains("namespace:"), "no namespace named with the prefix: {namespaces}");

    // A typo starts nothing: refused, with the node's namespaces and what to pass instead.
    for args in [
        vec!["federation", "propagate-anchor", "dev:nodel"],
        vec!["record", "append", "--namespace", "dev:nodel", "x"],
    ] {
        let (ok, text) = typed(&args, Some(&node1), home.path());
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains("its namespaces: dev:node1") && text.contains("--create"), "{args:?}: {text}");
    }
    let namespaces = cluster.status(1)["namespaces"].to_string();
    assert!(!namespaces.contains("dev:nodel"), "{namespaces}");
    // A malformed name is refused by the CLI itself.
    let (ok, text) = typed(&["federation", "propagate-anchor", "Dev Node"], Some(&node1), home.path());
    assert!(!ok && text.contains("kind:name"), "{text}");

    // On purpose, a new namespace no member lists: --create.
    let (ok, text) = typed(
        &["record", "append", "--namespace", "team:notes", "--create", "first"],
        Some(&node1),
        home.path(),
    );
    assert!(ok, "{text}");
    let (ok, text) = typed(
        &["record", "append", "--namespace", "namespace:team:notes", "second"],
        Some(&node1),
        home.path(),
    );
    assert!(ok, "a namespace the node holds needs no --create: {text}");
    assert!(text.contains("team:notes: record 1 stored"), "{text}");
}

#[test]
fn a_node_owns_the_namespaces_of_its_config_where_the_registry_lists_none_and_the_environment_overrides_its_config(
) {
    let mut cluster = Cluster::setup(3);
    // The registry lists no namespace for node 1; its configuration names one.
    let path = cluster.dir.path().join("registry.yaml");
    let mut registry =
        remembrancer_core::registry::Registry::from_yaml(&std::fs::read_to_string(&path).expect("registry"))
            .expect("parses");
    registry.members.get_mut(&common::did(1)).expect("dev1").namespaces.clear();
    std::fs::write(&path, registry.to_yaml()).expect("write registry");
    let config = cluster.node_dir(1).join("node.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("namespaces = []"), "{text}");
    let text = text.replacen("namespaces = []", "namespaces = [\"namespace:dao:vaultmesh\"]", 1);
    std::fs::write(&config, text).expect("write config");

    // A variable of the environment overrides the file, and a bad one stops the node with the
    // variable's name before anything starts.
    let output = Command::new(exe())
        .args(["node", "run", "--config"])
        .arg(&config)
        .env("REMEMBRANCER_THREADS", "two")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("$REMEMBRANCER_THREADS (field `node.threads`): expected a whole number"), "{text}");

    cluster.start_all();
    cluster.wait_connected(3);
    let node1 = cluster.data_dir(1);
    let home = tempfile::tempdir().expect("home");
    let (ok, text) = typed(
        &["record", "append", "--namespace", "dao:vaultmesh", "from the config"],
        Some(&node1),
        home.path(),
    );
    assert!(ok, "the config's namespace needs no --create: {text}");
    let (ok, text) =
        typed(&["record", "append", "--namespace", "dao:vaultmes", "a typo"], Some(&node1), home.path());
    assert!(!ok && text.contains("its namespaces: dao:vaultmesh"), "{text}");
    // Another member's namespace stays its own whatever a config says.
    let (ok, text) = typed(&["record", "append", "--namespace", "dev:node2", "x"], Some(&node1), home.path());
    assert!(!ok && text.contains("not a namespace this node owns"), "{text}");
    cluster.wait("dao:vaultmesh final on node 3", Duration::from_secs(30), |c| {
        c.final_size(3, "dao:vaultmesh") >= 1
    });
}
