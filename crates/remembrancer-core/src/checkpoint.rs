//! Checkpoints (c2sp.org/tlog-checkpoint) with the anchor extension line that makes a
//! checkpoint an anchor receipt: every anchor field a verifier relies on is inside the body.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::hash::{Digest, HashAlgorithm, TaggedHash};

/// Longest federation id, in bytes.
pub const FEDERATION_ID_BYTES_MAX: usize = 128;
/// Longest namespace, in bytes.
pub const NAMESPACE_BYTES_MAX: usize = 128;
/// Longest anchor target or transaction hash, in bytes.
pub const ANCHOR_FIELD_BYTES_MAX: usize = 128;
/// Tag that opens the anchor extension line; the version is part of the name.
pub const ANCHOR_EXTENSION_TAG: &str = "remembrancer/anchor/v1";

/// Why a checkpoint body or one of its names is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not have the tlog-checkpoint shape.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// A federation id is not valid.
    #[error("federation id {0:?} is not valid: use 1-128 lowercase letters, digits, '.', '-' or '_'")]
    BadFederationId(String),
    /// A namespace is not valid.
    #[error(
        "namespace {0:?} is not valid: use <kind>:<name> of lowercase letters and digits, as dao:vaultmesh"
    )]
    BadNamespace(String),
    /// An anchor field is not valid.
    #[error("anchor field {field} is not valid: {reason}")]
    BadAnchorField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Checks a federation id (the registry's `name`).
pub fn validate_federation_id(id: &str) -> Result<(), CheckpointError> {
    let ok = !id.is_empty()
        && id.len() <= FEDERATION_ID_BYTES_MAX
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::BadFederationId(id.to_string()))
    }
}

/// Checks a namespace against the spec's pattern `^[a-z0-9]+:[a-z0-9]+$`.
pub fn validate_namespace(namespace: &str) -> Result<(), CheckpointError> {
    let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = namespace.len() <= NAMESPACE_BYTES_MAX
        && matches!(namespace.split_once(':'), Some((kind, name)) if part_ok(kind) && part_ok(name));
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::BadNamespace(namespace.to_string()))
    }
}

/// The checkpoint origin of a namespace: `<federation_id>/<namespace>`.
pub fn origin(federation_id: &str, namespace: &str) -> String {
    format!("{federation_id}/{namespace}")
}

/// What the anchor signer asserts beyond origin, size and root: the hash algorithm, where the
/// root was anchored and when. For the `local` target the federation receipt itself is the
/// anchor: there is no transaction and no block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorClaim {
    /// Hash algorithm of the namespace's tree.
    pub algorithm: HashAlgorithm,
    /// Anchor target (`local`, `eip155:1`, ...).
    pub target: String,
    /// Transaction carrying the root, when the target is a chain.
    pub tx_hash: Option<String>,
    /// Block of that transaction.
    pub block: Option<u64>,
    /// When the batch was anchored (Unix seconds).
    pub anchored_at: u64,
    /// When the anchor signer signed (Unix seconds): the anchor signature's timestamp.
    pub signed_at: u64,
    /// Version of the registry under which the quorum is counted.
    pub registry_version: u64,
}

fn check_token(field: &'static str, value: &str) -> Result<(), CheckpointError> {
    if value.is_empty()
        || value.len() > ANCHOR_FIELD_BYTES_MAX
        || value == "-"
        || !value.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
    {
        return Err(CheckpointError::BadAnchorField {
            field,
            reason: "1-128 printable ASCII characters without spaces or '='".to_string(),
        });
    }
    Ok(())
}

impl AnchorClaim {
    /// A claim for the `local` target: the federation receipt is the anchor.
    pub fn local(algorithm: HashAlgorithm, time: u64) -> Self {
        AnchorClaim {
            algorithm,
            target: "local".to_string(),
            tx_hash: None,
            block: None,
            anchored_at: time,
            signed_at: time,
            registry_version: 1,
        }
    }

    /// The same claim counted under registry `version`.
    pub fn with_registry_version(mut self, version: u64) -> Self {
        self.registry_version = version;
        self
    }

    /// Checks the free-text fields.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        self.view().validate()
    }

    /// The claim's fields, borrowed.
    pub fn view(&self) -> AnchorRef<'_> {
        AnchorRef {
            algorithm: self.algorithm,
            target: &self.target,
            tx_hash: self.tx_hash.as_deref(),
            block: self.block,
            anchored_at: self.anchored_at,
            signed_at: self.signed_at,
            registry_version: self.registry_version,
        }
    }

    /// The extension line, without its newline.
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(160);
        let _ = self.view().write_line(&mut line);
        line
    }

    /// Parses the extension line.
    pub fn parse_line(line: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(format!("anchor line {line:?}: {why}"));
        let mut words = line.split(' ');
        if words.next() != Some(ANCHOR_EXTENSION_TAG) {
            return Err(bad("does not start with the anchor tag"));
        }
        let mut field = |name: &str| -> Result<&str, CheckpointError> {
            let word = words.next().ok_or_else(|| bad("too few fields"))?;
            word.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or_else(|| bad("fields out of order"))
        };
        let algorithm = field("hash")?.parse().map_err(|_| bad("unknown hash"))?;
        let target = field("target")?.to_string();
        let tx_hash = match field("tx")? {
            "-" => None,
            tx => Some(tx.to_string()),
        };
        let block = match field("block")? {
            "-" => None,
            block => Some(parse_decimal(block).ok_or_else(|| bad("block is not a number"))?),
        };
        let anchored_at = parse_decimal(field("anchored")?).ok_or_else(|| bad("bad anchored time"))?;
        let signed_at = parse_decimal(field("signed")?).ok_or_else(|| bad("bad signed time"))?;
        let registry_version =
            parse_decimal(field("registry")?).ok_or_else(|| bad("bad registry version"))?;
        if words.next().is_some() {
            return Err(bad("trailing fields"));
        }
        let claim =
            AnchorClaim { algorithm, target, tx_hash, block, anchored_at, signed_at, registry_version };
        claim.validate()?;
        Ok(claim)
    }
}

/// Parses a canonical decimal (no sign, no leading zeros).
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || (text.len() > 1 && text.starts_with('0'))
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}

/// An [`AnchorClaim`]'s fields, borrowed from wherever they are kept (a receipt keeps them
/// among its own fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorRef<'a> {
    /// See [`AnchorClaim::algorithm`].
    pub algorithm: HashAlgorithm,
    /// See [`AnchorClaim::target`].
    pub target: &'a str,
    /// See [`AnchorClaim::tx_hash`].
    pub tx_hash: Option<&'a str>,
    /// See [`AnchorClaim::block`].
    pub block: Option<u64>,
    /// See [`AnchorClaim::anchored_at`].
    pub anchored_at: u64,
    /// See [`AnchorClaim::signed_at`].
    pub signed_at: u64,
    /// See [`AnchorClaim::registry_version`].
    pub registry_version: u64,
}

impl AnchorRef<'_> {
    /// [`AnchorClaim::validate`].
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_token("target", self.target)?;
        if let Some(tx) = self.tx_hash {
            check_token("tx_hash", tx)?;
        }
        Ok(())
    }

    /// Writes [`AnchorClaim::to_line`] to `out`.
    fn write_line(&self, out: &mut impl Write) -> std::fmt::Result {
        write!(out, "{ANCHOR_EXTENSION_TAG} hash={} target={}", self.algorithm, self.target)?;
        write!(out, " tx={}", self.tx_hash.unwrap_or("-"))?;
        match self.block {
            Some(block) => write!(out, " block={block}")?,
            None => out.write_str(" block=-")?,
        }
        write!(
            out,
            " anchored={} signed={} registry={}",
            self.anchored_at, self.signed_at, self.registry_version
        )
    }
}

/// A [`Checkpoint`]'s fields, borrowed: what a body is checked and written from without
/// copying them first (a node writes the body of every receipt it checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRef<'a> {
    /// See [`Checkpoint::federation_id`].
    pub federation_id: &'a str,
    /// See [`Checkpoint::namespace`].
    pub namespace: &'a str,
    /// See [`Checkpoint::size`].
    pub size: u64,
    /// See [`Checkpoint::root`].
    pub root: &'a Digest,
    /// See [`Checkpoint::anchor`].
    pub anchor: AnchorRef<'a>,
}

impl CheckpointRef<'_> {
    /// [`Checkpoint::validate`].
    pub fn validate(&self) -> Result<(), CheckpointError> {
        validate_federation_id(self.federation_id)?;
        validate_namespace(self.namespace)?;
        self.anchor.validate()
    }

    /// [`Checkpoint::body`].
    pub fn body(&self) -> String {
        let mut body = String::with_capacity(256);
        let _ = self.write_body(&mut body);
        body
    }

    /// Writes [`Checkpoint::body`] to `out`, with no allocation of its own.
    fn write_body(&self, out: &mut impl Write) -> std::fmt::Result {
        let mut root = [0u8; 44];
        let written = BASE64.encode_slice(self.root, &mut root).map_err(|_| std::fmt::Error)?;
        let root = std::str::from_utf8(&root[..written]).map_err(|_| std::fmt::Error)?;
        write!(out, "{}/{}\n{}\n{root}\n", self.federation_id, self.namespace, self.size)?;
        self.anchor.write_line(out)?;
        out.write_char('\n')
    }

    /// The checkpoint, owned.
    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            federation_id: self.federation_id.to_string(),
            namespace: self.namespace.to_string(),
            size: self.size,
            root: *self.root,
            anchor: AnchorClaim {
                algorithm: self.anchor.algorithm,
                target: self.anchor.target.to_string(),
                tx_hash: self.anchor.tx_hash.map(str::to_string),
                block: self.anchor.block,
                anchored_at: self.anchor.anchored_at,
                signed_at: self.anchor.signed_at,
                registry_version: self.anchor.registry_version,
            },
        }
    }
}

/// A namespace checkpoint: origin, size, root and the anchor claim, as a tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Federation the namespace belongs to.
    pub federation_id: String,
    /// The namespace.
    pub namespace: String,
    /// Number of records.
    pub size: u64,
    /// Root hash at `size`.
    pub root: Digest,
    /// The anchor claim (hash algorithm, target, times).
    pub anchor: AnchorClaim,
}

impl Checkpoint {
    /// The origin line.
    pub fn origin(&self) -> String {
        origin(&self.federation_id, &self.namespace)
    }

    /// The root with its algorithm.
    pub fn tagged_root(&self) -> TaggedHash {
        TaggedHash::new(self.anchor.algorithm, self.root)
    }

    /// Checks names and fields.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        self.view().validate()
    }

    /// The exact body that signatures cover: `origin\nsize\nbase64(root)\nanchor line\n`.
    pub fn body(&self) -> String {
        self.view().body()
    }

    /// The checkpoint's fields, borrowed.
    pub fn view(&self) -> CheckpointRef<'_> {
        CheckpointRef {
            federation_id: &self.federation_id,
            namespace: &self.namespace,
            size: self.size,
            root: &self.root,
            anchor: self.anchor.view(),
        }
    }

    /// Parses a body written by [`Checkpoint::body`].
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let mut lines =
            body.strip_suffix('\n').ok_or_else(|| bad("body does not end with a newline"))?.split('\n');
        let [Some(origin), Some(size), Some(root), Some(anchor), None] =
            std::array::from_fn(|_| lines.next())
        else {
            return Err(bad("expected origin, size, root and one anchor line"));
        };
        let (federation_id, namespace) =
            origin.split_once('/').ok_or_else(|| bad("origin is not <federation>/<namespace>"))?;
        let size = parse_decimal(size).ok_or_else(|| bad("size is not a canonical decimal"))?;
        // Room for one byte more than a root: a longer text does not fit, a shorter one is short.
        let mut root_bytes = [0u8; 33];
        let root = match BASE64.decode_slice(root, &mut root_bytes) {
            Ok(32) => root_bytes[..32].try_into().map_err(|_| bad("root is not 32 bytes"))?,
            Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                return Err(bad("root is not 32 bytes"))
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => return Err(bad("root is not base64")),
        };
        let anchor = AnchorClaim::parse_line(anchor)?;
        let checkpoint = Checkpoint {
            federation_id: federation_id.to_string(),
            namespace: namespace.to_string(),
            size,
            root,
            anchor,
        };
        checkpoint.validate()?;
        // Canonical: the body this checkpoint writes, compared as it is written.
        let mut compare = Compare { rest: body };
        if checkpoint.view().write_body(&mut compare).is_err() || !compare.rest.is_empty() {
            return Err(bad("body is not in canonical form"));
        }
        Ok(checkpoint)
    }
}

/// Most extension lines a checkpoint from elsewhere may carry.
pub const EXTENSION_LINES_MAX: usize = 64;

/// A checkpoint body as c2sp.org/tlog-checkpoint writes it, from any log: the origin, the tree
/// size, the root hash and zero or more extension lines, each line ending in a newline. What a
/// verifier checks before it knows whether the body is one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogCheckpoint<'a> {
    /// The origin line.
    pub origin: &'a str,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Digest,
    /// The extension lines, in order.
    pub extensions: Vec<&'a str>,
}

impl<'a> TlogCheckpoint<'a> {
    /// Parses a body: a non-empty origin, a canonical decimal size, a base64 32-byte root and
    /// non-empty extension lines, nothing after the final newline.
    pub fn parse(body: &'a str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let mut lines =
            body.strip_suffix('\n').ok_or_else(|| bad("body does not end with a newline"))?.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(bad("expected an origin, a size and a root hash line"));
        };
        if origin.is_empty() {
            return Err(bad("the origin line is empty"));
        }
        let size = parse_decimal(size).ok_or_else(|| bad("size is not a canonical decimal"))?;
        let decoded = BASE64.decode(root).map_err(|_| bad("root is not base64"))?;
        let root: Digest = decoded.as_slice().try_into().map_err(|_| bad("root is not 32 bytes"))?;
        let extensions: Vec<&str> = lines.collect();
        if extensions.iter().any(|line| line.is_empty()) {
            return Err(bad("an extension line is empty"));
        }
        if extensions.len() > EXTENSION_LINES_MAX {
            return Err(bad("more than 64 extension lines"));
        }
        Ok(TlogCheckpoint { origin, size, root, extensions })
    }

    /// The federation and namespace of an origin `<federation>/<namespace>`, when it is one.
    pub fn federation_namespace(&self) -> Result<(&'a str, &'a str), CheckpointError> {
        let (federation, namespace) = self.origin.split_once('/').ok_or_else(|| {
            CheckpointError::Malformed(format!("origin {:?} is not <federation>/<namespace>", self.origin))
        })?;
        validate_federation_id(federation)?;
        validate_namespace(namespace)?;
        Ok((federation, namespace))
    }

    /// The `remembrancer/anchor/v1` lines among the extensions.
    pub fn anchor_lines(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.extensions.iter().copied().filter(|line| line.split(' ').next() == Some(ANCHOR_EXTENSION_TAG))
    }
}

/// A [`Write`] sink that checks what is written against `rest`, consuming it, and fails at the
/// first difference: a text compared with its canonical form without formatting it.
struct Compare<'a> {
    rest: &'a str,
}

impl Write for Compare<'_> {
    fn write_str(&mut self, written: &str) -> std::fmt::Result {
        self.rest = self.rest.strip_prefix(written).ok_or(std::fmt::Error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            federation_id: "vaultmesh-primary".to_string(),
            namespace: "dao:vaultmesh".to_string(),
            size: 42,
            root: [3u8; 32],
            anchor: AnchorClaim {
                algorithm: HashAlgorithm::Sha256,
                target: "eip155:1".to_string(),
                tx_hash: Some("0x1234".to_string()),
                block: Some(18_345_201),
                anchored_at: 1_698_042_601,
                signed_at: 1_698_042_610,
                registry_version: 3,
            },
        }
    }

    #[test]
    fn body_round_trips() {
        let checkpoint = sample();
        let body = checkpoint.body();
        assert!(body.starts_with("vaultmesh-primary/dao:vaultmesh\n42\n"));
        assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
        let local = Checkpoint { anchor: AnchorClaim::local(HashAlgorithm::Blake3, 7), ..sample() };
        assert_eq!(Checkpoint::parse_body(&local.body()), Ok(local));
    }

    #[test]
    fn a_borrowed_checkpoint_is_the_checkpoint_it_borrows() {
        for checkpoint in
            [sample(), Checkpoint { anchor: AnchorClaim::local(HashAlgorithm::Blake3, 7), ..sample() }]
        {
            assert_eq!(checkpoint.view().to_checkpoint(), checkpoint);
        }
        let bad_target =
            Checkpoint { anchor: AnchorClaim { target: "a b".to_string(), ..sample().anchor }, ..sample() };
        assert!(bad_target.view().validate().is_err());
        assert!(Checkpoint { namespace: "no-colon".to_string(), ..sample() }.view().validate().is_err());
    }

    #[test]
    fn any_tlog_checkpoint_parses_with_its_extension_lines() {
        let root = BASE64.encode([7u8; 32]);
        let plain = format!("example.com/log\n12\n{root}\n");
        let parsed = TlogCheckpoint::parse(&plain).expect("no extension line");
        assert_eq!((parsed.origin, parsed.size, parsed.extensions.len()), ("example.com/log", 12, 0));
        assert!(parsed.federation_namespace().is_err(), "not <federation>/<namespace>");
        let ours = sample().body();
        let parsed = TlogCheckpoint::parse(&ours).expect("ours");
        assert_eq!(parsed.anchor_lines().count(), 1);
        assert_eq!(parsed.federation_namespace().expect("names"), ("vaultmesh-primary", "dao:vaultmesh"));
        let more = format!("f/dao:x\n3\n{root}\nexample.org/ext one\n{}\n", sample().anchor.to_line());
        assert_eq!(TlogCheckpoint::parse(&more).expect("two").extensions.len(), 2);
        for bad in [
            format!("f/dao:x\n3\n{root}"),
            format!("f/dao:x\n03\n{root}\n"),
            format!("f/dao:x\n3\n{}\n", BASE64.encode([1u8; 31])),
            format!("f/dao:x\n3\n{root}\n\n"),
            format!("\n3\n{root}\n"),
            "f/dao:x\n3\n".to_string(),
        ] {
            assert!(TlogCheckpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let body = sample().body();
        for bad in [
            body.replace("\n42\n", "\n042\n"),
            body.replace("hash=sha256", "hash=md5"),
            body.trim_end().to_string(),
            body.replace("dao:vaultmesh", "DAO"),
            format!("{body}extra\n"),
            body.replace(" signed=", " signed=x"),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_validated() {
        validate_namespace("dao:vaultmesh").expect("valid");
        for bad in ["dao", "dao:", ":x", "dao:vault/mesh", "Dao:x", "dao:x:y"] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
        validate_federation_id("vaultmesh-primary").expect("valid");
        assert!(validate_federation_id("a/b").is_err());
        assert!(validate_federation_id("").is_err());
    }
}
