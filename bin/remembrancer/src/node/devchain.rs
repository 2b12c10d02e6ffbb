//! The devnet's local Ethereum chain (`devnet --anchor eip155`): anvil, from the npm package
//! `@foundry-rs/anvil` that scripts/setup installs into `.tools/anvil` (or the binary
//! `$REMEMBRANCER_ANVIL` names), one block a second, its funded accounts' keys read from the
//! file anvil writes at start. Stopped with the devnet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The variable that names an anvil binary to use instead of the one scripts/setup installs.
pub const ANVIL_VARIABLE: &str = "REMEMBRANCER_ANVIL";

/// anvil's chain id.
pub const CHAIN_ID: u64 = 31337;

/// A running local chain.
pub struct DevChain {
    child: Child,
    /// Its JSON-RPC endpoint.
    pub url: String,
    /// The secret keys of its funded accounts, hex.
    pub keys: Vec<String>,
}

/// The anvil binary: `$REMEMBRANCER_ANVIL`, else `.tools/anvil` under the working directory
/// or beside the remembrancer binary's workspace, else `anvil` on the PATH.
pub fn anvil_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(ANVIL_VARIABLE).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let installed = Path::new(".tools/anvil/node_modules/.bin/anvil");
    let mut candidates = vec![installed.to_path_buf()];
    // target/<profile>/remembrancer: the workspace is two folders up.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(workspace) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(workspace.join(installed));
        }
    }
    if let Some(found) = candidates.into_iter().find(|path| path.exists()) {
        return Ok(found);
    }
    let on_path = Command::new("anvil").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|status| status.success()) {
        return Ok(PathBuf::from("anvil"));
    }
    anyhow::bail!(
        "anvil is not installed: run scripts/setup (it installs @foundry-rs/anvil into .tools/anvil with npm), \
         or set {ANVIL_VARIABLE} to an anvil binary"
    )
}

impl DevChain {
    /// Starts anvil on a free port of 127.0.0.1 with `accounts` funded accounts, writing its
    /// log and account file into `dir`.
    pub fn start(dir: &Path, accounts: usize) -> anyhow::Result<DevChain> {
        let binary = anvil_binary()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("anvil.json");
        let _ = std::fs::remove_file(&config);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.join("anvil.log"))
            .with_context(|| format!("cannot create {}", dir.join("anvil.log").display()))?;
        let mut child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--accounts", &accounts.to_string(), "--block-time", "1"])
            .arg("--config-out")
            .arg(&config)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let started = Instant::now();
        let written = loop {
            if let Ok(text) = std::fs::read_to_string(&config) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                    break value;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("anvil exited at start ({status}); see {}", dir.join("anvil.log").display());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                anyhow::bail!("anvil did not start within 30 s; see {}", dir.join("anvil.log").display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let keys: Vec<String> = written["private_keys"]
            .as_array()
            .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if keys.len() < accounts {
            let _ = child.kill();
            anyhow::bail!("anvil wrote {} account keys, {accounts} were asked for", keys.len());
        }
        Ok(DevChain { child, url: format!("http://127.0.0.1:{port}"), keys })
    }
}

impl Drop for DevChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
