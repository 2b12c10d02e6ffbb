//! RFC 3161 time-stamp tokens: the request a node sends (a nonce, `certReq`), and the checks a
//! token must pass before a node or an auditor takes it as an anchor.
//!
//! What is stamped is the datum `"RMB1" || batch_root` (the eip155 calldata), its SHA-256 the
//! message imprint. A token is accepted when, in this order:
//! 1. it is CMS SignedData over a TSTInfo with exactly one signer;
//! 2. OpenSSL verifies the signature and the signer's chain to a trusted root at the token's
//!    genTime, under the timestamp-signing purpose (an extended key usage of timeStamping only,
//!    marked critical; key usage, if present, for signatures only);
//! 3. the signer's certificate is not a CA, and the ESS signing-certificate attribute (v1 or v2)
//!    names it by its hash;
//! 4. the TSTInfo's imprint is SHA-256 of the datum, its nonce the one sent (when one was),
//!    its policy the one expected (when one is configured).
//!
//! genTime may carry fractional seconds (RFC 3161 allows any precision; see `der.rs`).

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509PurposeId, X509};

use crate::der::{self, Item};

/// Largest token or response read, bytes (a token with a chain of a few certificates is under
/// 8 KiB).
pub const TOKEN_BYTES_MAX: usize = 64 * 1024;

const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_CT_TSTINFO: &str = "1.2.840.113549.1.9.16.1.4";
const ID_SHA1: &str = "1.3.14.3.2.26";
const ID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const ID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const ID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
const ID_SIGNING_CERTIFICATE: &str = "1.2.840.113549.1.9.16.2.12";
const ID_SIGNING_CERTIFICATE_V2: &str = "1.2.840.113549.1.9.16.2.47";
const ID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const ID_SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";

/// Why a token or a TSA's answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TspError {
    /// Not the structure RFC 3161 and CMS define.
    #[error("not a time-stamp token: {0}")]
    Malformed(String),
    /// The TSA answered, but did not grant a token.
    #[error("the TSA refused: status {status}{text}")]
    NotGranted {
        /// PKIStatus (2 rejection, 3 waiting, 4 revocation warning, 5 revoked).
        status: u64,
        /// The TSA's statusString, if any.
        text: String,
    },
    /// The CMS signature or the signer's chain does not verify (wrong CA, expired at genTime,
    /// a key usage not for time-stamping, a non-critical EKU).
    #[error("the token's signature does not verify: {0}")]
    Signature(String),
    /// The signer is a CA, or the ESS signing-certificate attribute does not name it.
    #[error("the token's signer is not bound: {0}")]
    Signer(String),
    /// The token stamps another datum.
    #[error("the token stamps another datum: {0}")]
    Imprint(String),
    /// The nonce is not the one sent.
    #[error("the token's nonce {found:?} is not the nonce sent ({sent})")]
    Nonce {
        /// The nonce sent.
        sent: u64,
        /// The token's nonce, if it has one.
        found: Option<u64>,
    },
    /// The policy is not the one configured.
    #[error("the token's policy is {found}, expected {expected}")]
    Policy {
        /// The policy configured.
        expected: String,
        /// The token's.
        found: String,
    },
}

fn malformed(error: der::DerError) -> TspError {
    TspError::Malformed(error.0)
}

/// The datum stamped for `root`: `"RMB1" || root`.
pub fn datum(root: &[u8; 32]) -> Vec<u8> {
    crate::eip155::calldata(root)
}

/// The message imprint for `root`: SHA-256 of the datum.
pub fn imprint(root: &[u8; 32]) -> [u8; 32] {
    openssl::sha::sha256(&datum(root))
}

/// A TimeStampReq for `imprint` (SHA-256) with `nonce`, asking for the TSA's certificate.
pub fn request(imprint: &[u8; 32], nonce: u64) -> Vec<u8> {
    let algorithm = der::write_sequence(&[der::write_oid(ID_SHA256), der::write(der::NULL, &[])]);
    let message_imprint = der::write_sequence(&[algorithm, der::write(der::OCTET_STRING, imprint)]);
    der::write_sequence(&[
        der::write_unsigned(1),
        message_imprint,
        der::write_unsigned(nonce),
        der::write(der::BOOLEAN, &[0xff]),
    ])
}

/// The token a TimeStampResp carries, once granted.
pub fn response_token(response: &[u8]) -> Result<Vec<u8>, TspError> {
    if response.len() > TOKEN_BYTES_MAX {
        return Err(TspError::Malformed(format!("an answer of {} bytes", response.len())));
    }
    let outer =
        der::read_all(response).and_then(|i| i.expect(der::SEQUENCE, "TimeStampResp")).map_err(malformed)?;
    let parts = outer.children().map_err(malformed)?;
    let status_info = parts
        .first()
        .ok_or_else(|| TspError::Malformed("no status".into()))?
        .expect(der::SEQUENCE, "PKIStatusInfo")
        .map_err(malformed)?;
    let status_parts = status_info.children().map_err(malformed)?;
    let status = status_parts
        .first()
        .ok_or_else(|| TspError::Malformed("no status".into()))?
        .unsigned()
        .map_err(malformed)?;
    if status > 1 {
        let text = status_parts
            .get(1)
            .filter(|i| i.tag == der::SEQUENCE)
            .and_then(|i| i.children().ok())
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| String::from_utf8_lossy(t.body).into_owned())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        return Err(TspError::NotGranted { status, text });
    }
    let token = parts.get(1).ok_or_else(|| TspError::Malformed("granted, but no token".into()))?;
    Ok(token.whole.to_vec())
}

/// What a token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The imprint of the datum (see [`imprint`]).
    pub imprint: [u8; 32],
    /// The nonce sent, when the token is checked as an answer (an auditor has none).
    pub nonce: Option<u64>,
    /// The TSA policy required, dotted (none: any).
    pub policy: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    /// The TSA's policy, dotted.
    pub policy: String,
    /// The token's serial number, hex.
    pub serial: String,
    /// genTime as the token writes it (`20261207185938.941Z`).
    pub gen_time: String,
    /// genTime, Unix seconds.
    pub unix: u64,
    /// genTime's fraction, milliseconds (finer digits dropped).
    pub millis: u32,
    /// The accuracy the TSA claims, as it states it (`1 s 500 ms`), if it does.
    pub accuracy: Option<String>,
    /// The signer's subject (`CN=Dev TSA`).
    pub signer: String,
}

struct SignedData<'a> {
    version: u64,
    digest_algorithms: Vec<Item<'a>>,
    content: &'a [u8],
    certificates: Vec<Item<'a>>,
    signer: Vec<Item<'a>>,
}

fn signed_data(token: &[u8]) -> Result<SignedData<'_>, TspError> {
    let info =
        der::read_all(token).and_then(|i| i.expect(der::SEQUENCE, "ContentInfo")).map_err(malformed)?;
    let parts = info.children().map_err(malformed)?;
    let [content_type, content] = parts.as_slice() else {
        return Err(TspError::Malformed("a ContentInfo of other than two parts".into()));
    };
    if content_type.oid().map_err(malformed)? != ID_SIGNED_DATA {
        return Err(TspError::Malformed("not CMS SignedData".into()));
    }
    let content = content.expect(der::context(0), "content").map_err(malformed)?;
    let signed =
        der::read_all(content.body).and_then(|i| i.expect(der::SEQUENCE, "SignedData")).map_err(malformed)?;
    let fields = signed.children().map_err(malformed)?;
    let encapsulated = fields
        .get(2)
        .ok_or_else(|| TspError::Malformed("SignedData cut short".into()))?
        .expect(der::SEQUENCE, "encapContentInfo")
        .map_err(malformed)?
        .children()
        .map_err(malformed)?;
    let [e_type, e_content] = encapsulated.as_slice() else {
        return Err(TspError::Malformed("no encapsulated content".into()));
    };
    if e_type.oid().map_err(malformed)? != ID_CT_TSTINFO {
        return Err(TspError::Malformed("the signed content is not a TSTInfo".into()));
    }
    let e_content = e_content.expect(der::context(0), "eContent").map_err(malformed)?;
    let octets = der::read_all(e_content.body)
        .and_then(|i| i.expect(der::OCTET_STRING, "eContent"))
        .map_err(malformed)?;
    let certificates = match fields.get(3) {
        Some(item) if item.tag == der::context(0) => item.children().map_err(malformed)?,
        _ => Vec::new(),
    };
    let signer_infos = fields
        .last()
        .ok_or_else(|| TspError::Malformed("no signerInfos".into()))?
        .expect(der::SET, "signerInfos")
        .map_err(malformed)?
        .children()
        .map_err(malformed)?;
    let [signer_info] = signer_infos.as_slice() else {
        return Err(TspError::Malformed(format!("{} signers; a token has exactly one", signer_infos.len())));
    };
    let signer =
        signer_info.expect(der::SEQUENCE, "SignerInfo").map_err(malformed)?.children().map_err(malformed)?;
    let version = fields
        .first()
        .ok_or_else(|| TspError::Malformed("no version".into()))?
        .unsigned()
        .map_err(malformed)?;
    let digest_algorithms = fields
        .get(1)
        .ok_or_else(|| TspError::Malformed("no digestAlgorithms".into()))?
        .expect(der::SET, "digestAlgorithms")
        .map_err(malformed)?
        .children()
        .map_err(malformed)?;
    Ok(SignedData { version, digest_algorithms, content: octets.body, certificates, signer })
}

/// A digest's AlgorithmIdentifier: a known digest, its parameters absent or NULL (RFC 5754).
fn digest_algorithm(item: &Item<'_>) -> Result<String, TspError> {
    let parts = item
        .expect(der::SEQUENCE, "AlgorithmIdentifier")
        .map_err(malformed)?
        .children()
        .map_err(malformed)?;
    let oid = parts
        .first()
        .ok_or_else(|| TspError::Malformed("an empty AlgorithmIdentifier".into()))?
        .oid()
        .map_err(malformed)?;
    let parameters_ok = match &parts[1..] {
        [] => true,
        [null] => null.tag == der::NULL && null.body.is_empty(),
        _ => false,
    };
    if digest_of(&oid).is_none() || !parameters_ok {
        return Err(TspError::Malformed(format!(
            "digest algorithm {oid} with parameters {parameters_ok}: not a SHA-1 or SHA-2 identifier"
        )));
    }
    Ok(oid)
}

/// The form of the parts of SignedData no signature covers, held to what RFC 5652 and RFC
/// 5754 allow, so that a token has one encoding: the versions (3, and 1 or 3 by the sid's
/// form), the digest identifiers, and a signature algorithm that names the signer's digest.
fn check_form(signed: &SignedData<'_>) -> Result<(), TspError> {
    if signed.version != 3 {
        return Err(TspError::Malformed(format!(
            "SignedData version {}, not 3 (content not id-data)",
            signed.version
        )));
    }
    let listed = signed.digest_algorithms.iter().map(digest_algorithm).collect::<Result<Vec<_>, _>>()?;
    let (Some(version), Some(sid), Some(digest)) =
        (signed.signer.first(), signed.signer.get(1), signed.signer.get(2))
    else {
        return Err(TspError::Malformed("SignerInfo cut short".into()));
    };
    let version = version.unsigned().map_err(malformed)?;
    let sid_version = if sid.tag == der::SEQUENCE { 1 } else { 3 };
    if version != sid_version {
        return Err(TspError::Malformed(format!(
            "SignerInfo version {version}, not {sid_version} for its sid"
        )));
    }
    let digest = digest_algorithm(digest)?;
    if !listed.contains(&digest) {
        return Err(TspError::Malformed("the signer's digest is not among digestAlgorithms".into()));
    }
    let at = if signed.signer.get(3).is_some_and(|i| i.tag == der::context(0)) { 4 } else { 3 };
    let algorithm =
        signed.signer.get(at).ok_or_else(|| TspError::Malformed("no signatureAlgorithm".into()))?;
    let parts = algorithm
        .expect(der::SEQUENCE, "signatureAlgorithm")
        .map_err(malformed)?
        .children()
        .map_err(malformed)?;
    let oid = parts
        .first()
        .ok_or_else(|| TspError::Malformed("an empty signatureAlgorithm".into()))?
        .oid()
        .map_err(malformed)?;
    // The signature algorithms a TSA signs with, and the digest each implies (None: the
    // digest is the signer's digestAlgorithm).
    let implied = match oid.as_str() {
        "1.2.840.10045.4.3.2" | "1.2.840.113549.1.1.11" => Some(ID_SHA256),
        "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => Some(ID_SHA384),
        "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => Some(ID_SHA512),
        "1.2.840.113549.1.1.5" => Some(ID_SHA1),
        "1.2.840.113549.1.1.1" | "1.2.840.10045.2.1" | "1.2.840.113549.1.1.10" | "1.3.101.112" => None,
        other => {
            return Err(TspError::Malformed(format!(
                "signature algorithm {other} is not one a TSA signs with"
            )))
        }
    };
    if implied.is_some_and(|d| d != digest) {
        return Err(TspError::Malformed(format!(
            "signature algorithm {oid} does not use the signer's digest {digest}"
        )));
    }
    Ok(())
}

/// A certificate's parts this module reads.
struct Certificate<'a> {
    serial: &'a [u8],
    issuer: &'a [u8],
    extensions: Vec<(String, bool, &'a [u8])>,
}

fn certificate<'a>(cert: &Item<'a>) -> Result<Certificate<'a>, TspError> {
    let parts =
        cert.expect(der::SEQUENCE, "Certificate").map_err(malformed)?.children().map_err(malformed)?;
    let tbs = parts.first().ok_or_else(|| TspError::Malformed("empty certificate".into()))?;
    let mut fields = tbs.children().map_err(malformed)?;
    if fields.first().is_some_and(|f| f.tag == der::context(0)) {
        fields.remove(0);
    }
    let (Some(serial), Some(issuer)) = (fields.first(), fields.get(2)) else {
        return Err(TspError::Malformed("a certificate cut short".into()));
    };
    let mut extensions = Vec::new();
    if let Some(list) = fields.iter().find(|f| f.tag == der::context(3)) {
        let sequence = der::read_all(list.body).map_err(malformed)?;
        for extension in sequence.children().map_err(malformed)? {
            let items = extension.children().map_err(malformed)?;
            let oid = items
                .first()
                .ok_or_else(|| TspError::Malformed("an empty extension".into()))?
                .oid()
                .map_err(malformed)?;
            let critical = items
                .get(1)
                .filter(|i| i.tag == der::BOOLEAN)
                .map(Item::boolean)
                .transpose()
                .map_err(malformed)?;
            let value = items
                .last()
                .filter(|i| i.tag == der::OCTET_STRING)
                .ok_or_else(|| TspError::Malformed(format!("extension {oid} has no value")))?;
            extensions.push((oid, critical.unwrap_or(false), value.body));
        }
    }
    Ok(Certificate { serial: serial.body, issuer: issuer.whole, extensions })
}

fn digest_of(oid: &str) -> Option<MessageDigest> {
    match oid {
        ID_SHA1 => Some(MessageDigest::sha1()),
        ID_SHA256 => Some(MessageDigest::sha256()),
        ID_SHA384 => Some(MessageDigest::sha384()),
        ID_SHA512 => Some(MessageDigest::sha512()),
        _ => None,
    }
}

/// The signer's certificate among those the token carries, by its SignerInfo's sid.
fn signer_certificate<'a>(signed: &SignedData<'a>) -> Result<Item<'a>, TspError> {
    let sid = signed.signer.get(1).ok_or_else(|| TspError::Malformed("SignerInfo cut short".into()))?;
    for cert in &signed.certificates {
        let parsed = certificate(cert)?;
        let matches = if sid.tag == der::SEQUENCE {
            let names = sid.children().map_err(malformed)?;
            names.len() == 2 && names[0].whole == parsed.issuer && names[1].body == parsed.serial
        } else if sid.tag == der::context_primitive(0) {
            parsed.extensions.iter().any(|(oid, _, value)| {
                oid == ID_SUBJECT_KEY_IDENTIFIER && der::read_all(value).is_ok_and(|k| k.body == sid.body)
            })
        } else {
            false
        };
        if matches {
            return Ok(*cert);
        }
    }
    Err(TspError::Signer(
        "the token does not carry its signer's certificate (the request asks for it)".into(),
    ))
}

/// Step 3: the signer is not a CA, and the ESS attribute names its certificate.
fn check_signer(signed: &SignedData<'_>, cert: &Item<'_>) -> Result<(), TspError> {
    let parsed = certificate(cert)?;
    for (oid, _, value) in &parsed.extensions {
        if oid == ID_BASIC_CONSTRAINTS {
            let constraints = der::read_all(value).map_err(malformed)?.children().map_err(malformed)?;
            if constraints.first().is_some_and(|c| c.boolean() == Ok(true)) {
                return Err(TspError::Signer("the signer's certificate is a CA certificate".into()));
            }
        }
    }
    let attributes = signed
        .signer
        .iter()
        .find(|i| i.tag == der::context(0))
        .ok_or_else(|| TspError::Signer("the SignerInfo has no signed attributes".into()))?
        .children()
        .map_err(malformed)?;
    for attribute in attributes {
        let parts = attribute.children().map_err(malformed)?;
        let (Some(kind), Some(values)) = (parts.first(), parts.get(1)) else { continue };
        let kind = kind.oid().map_err(malformed)?;
        let v2 = kind == ID_SIGNING_CERTIFICATE_V2;
        if kind != ID_SIGNING_CERTIFICATE && !v2 {
            continue;
        }
        let value = values.children().map_err(malformed)?;
        let ids = value
            .first()
            .ok_or_else(|| TspError::Signer("an empty signing-certificate attribute".into()))?
            .children()
            .map_err(malformed)?;
        let first = ids.first().ok_or_else(|| TspError::Signer("no certificate id".into()))?;
        let certs = first.children().map_err(malformed)?;
        let id = certs
            .first()
            .ok_or_else(|| TspError::Signer("no certificate id".into()))?
            .children()
            .map_err(malformed)?;
        let (algorithm, hash) = match (v2, id.first()) {
            (true, Some(first)) if first.tag == der::SEQUENCE => {
                let oid = first
                    .children()
                    .map_err(malformed)?
                    .first()
                    .map(Item::oid)
                    .transpose()
                    .map_err(malformed)?;
                (oid.unwrap_or_default(), id.get(1))
            }
            (true, first) => (ID_SHA256.to_string(), first),
            (false, first) => (ID_SHA1.to_string(), first),
        };
        let hash = hash
            .filter(|h| h.tag == der::OCTET_STRING)
            .ok_or_else(|| TspError::Signer("no certificate hash".into()))?;
        let digest = digest_of(&algorithm).ok_or_else(|| {
            TspError::Signer(format!("a certificate hash by {algorithm}, not a known digest"))
        })?;
        let own = openssl::hash::hash(digest, cert.whole).map_err(|e| TspError::Signer(e.to_string()))?;
        if own.as_ref() != hash.body {
            return Err(TspError::Signer(
                "the ESS signing-certificate attribute names another certificate".into(),
            ));
        }
        return Ok(());
    }
    Err(TspError::Signer("no ESS signing-certificate attribute binds the signer's certificate".into()))
}

/// Unix seconds and milliseconds of a GeneralizedTime `YYYYMMDDhhmmss[.f…]Z`.
pub fn parse_gen_time(text: &str) -> Option<(u64, u32)> {
    let text = text.strip_suffix('Z')?;
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |range: std::ops::Range<usize>| whole[range].parse::<u64>().ok();
    let (year, month, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hour, minute, second) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = match fraction {
        None => 0,
        // DER: at least one digit, no trailing zero.
        Some(f)
            if !f.is_empty()
                && f.len() <= 9
                && f.bytes().all(|b| b.is_ascii_digit())
                && !f.ends_with('0') =>
        {
            format!("{f:0<3}")[..3].parse().ok()?
        }
        Some(_) => return None,
    };
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second, millis))
}

fn openssl_reason(error: &openssl::error::ErrorStack) -> String {
    let reasons: Vec<String> = error
        .errors()
        .iter()
        .map(|e| match (e.reason(), e.data()) {
            (Some(reason), Some(data)) => format!("{reason} ({data})"),
            (Some(reason), None) => reason.to_string(),
            (None, _) => e.to_string(),
        })
        .collect();
    if reasons.is_empty() {
        "OpenSSL gave no reason".to_string()
    } else {
        reasons.join("; ")
    }
}

/// The trust roots of TSAs, read from PEM (one or several certificates).
pub fn trusted_roots(pem: &[u8]) -> Result<Vec<X509>, String> {
    let roots =
        X509::stack_from_pem(pem).map_err(|e| format!("not PEM certificates: {}", openssl_reason(&e)))?;
    if roots.is_empty() {
        return Err("no certificate in the file".to_string());
    }
    Ok(roots)
}

/// Verifies `token` (a TimeStampToken, DER) against `roots` and what it must say.
pub fn verify_token(token: &[u8], roots: &[X509], expected: &Expected) -> Result<TokenInfo, TspError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(TspError::Malformed(format!("a token of {} bytes", token.len())));
    }
    // 1. The structure, and the TSTInfo as yet unverified (its genTime sets the chain's time).
    let signed = signed_data(token)?;
    check_form(&signed)?;
    let tst = parse_tst_info(signed.content)?;
    // 2. Signature and chain, by OpenSSL.
    let signature = |e: openssl::error::ErrorStack| TspError::Signature(openssl_reason(&e));
    let mut store = X509StoreBuilder::new().map_err(signature)?;
    for root in roots {
        store.add_cert(root.clone()).map_err(signature)?;
    }
    let mut param = X509VerifyParam::new().map_err(signature)?;
    param.set_purpose(X509PurposeId::TIMESTAMP_SIGN).map_err(signature)?;
    param.set_time(tst.unix.try_into().map_err(|_| TspError::Malformed("a genTime out of range".into()))?);
    store.set_param(&param).map_err(signature)?;
    let store = store.build();
    let mut cms = CmsContentInfo::from_der(token).map_err(|e| TspError::Malformed(openssl_reason(&e)))?;
    let mut content = Vec::new();
    cms.verify(None, Some(&store), None, Some(&mut content), CMSOptions::BINARY).map_err(signature)?;
    if content != signed.content {
        return Err(TspError::Malformed("OpenSSL verified other content than the TSTInfo read".into()));
    }
    // 3. The signer.
    let cert = signer_certificate(&signed)?;
    check_signer(&signed, &cert)?;
    let signer = subject(cert.whole);
    // 4. What it stamps.
    if tst.algorithm != ID_SHA256 {
        return Err(TspError::Imprint(format!("an imprint by {}, not SHA-256", tst.algorithm)));
    }
    if tst.imprint != expected.imprint {
        return Err(TspError::Imprint(format!(
            "imprint {}, expected {}",
            hex::encode(&tst.imprint),
            hex::encode(expected.imprint)
        )));
    }
    if let Some(sent) = expected.nonce {
        if tst.nonce != Some(sent) {
            return Err(TspError::Nonce { sent, found: tst.nonce });
        }
    }
    if let Some(policy) = &expected.policy {
        if &tst.policy != policy {
            return Err(TspError::Policy { expected: policy.clone(), found: tst.policy });
        }
    }
    Ok(TokenInfo {
        policy: tst.policy,
        serial: tst.serial,
        gen_time: tst.gen_time,
        unix: tst.unix,
        millis: tst.millis,
        accuracy: tst.accuracy,
        signer,
    })
}

/// A certificate's subject as `CN=…, O=…` (empty if it cannot be read).
fn subject(cert: &[u8]) -> String {
    X509::from_der(cert)
        .map(|x| {
            x.subject_name()
                .entries()
                .map(|e| {
                    let name = e.object().nid().short_name().unwrap_or("?");
                    format!("{name}={}", e.data().to_string().unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A token's genTime and its signer's subject, read without verifying anything: what an
/// anchor proof names, for the auditor's check ([`verify_token`]) to compare.
pub fn token_fields(token: &[u8]) -> Result<(String, String), TspError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(TspError::Malformed(format!("a token of {} bytes", token.len())));
    }
    let signed = signed_data(token)?;
    let tst = parse_tst_info(signed.content)?;
    let cert = signer_certificate(&signed)?;
    Ok((tst.gen_time, subject(cert.whole)))
}

struct TstInfo {
    policy: String,
    algorithm: String,
    imprint: Vec<u8>,
    serial: String,
    gen_time: String,
    unix: u64,
    millis: u32,
    accuracy: Option<String>,
    nonce: Option<u64>,
}

fn parse_tst_info(bytes: &[u8]) -> Result<TstInfo, TspError> {
    let info = der::read_all(bytes).and_then(|i| i.expect(der::SEQUENCE, "TSTInfo")).map_err(malformed)?;
    let fields = info.children().map_err(malformed)?;
    let field = |i: usize, tag: u8, what: &str| -> Result<Item<'_>, TspError> {
        fields
            .get(i)
            .ok_or_else(|| TspError::Malformed(format!("TSTInfo has no {what}")))?
            .expect(tag, what)
            .map_err(malformed)
    };
    if field(0, der::INTEGER, "version")?.unsigned().map_err(malformed)? != 1 {
        return Err(TspError::Malformed("a TSTInfo version other than 1".into()));
    }
    let policy = field(1, der::OID, "policy")?.oid().map_err(malformed)?;
    let imprint = field(2, der::SEQUENCE, "messageImprint")?.children().map_err(malformed)?;
    let [algorithm, hashed] = imprint.as_slice() else {
        return Err(TspError::Malformed("a messageImprint of other than two parts".into()));
    };
    let algorithm = algorithm
        .children()
        .map_err(malformed)?
        .first()
        .ok_or_else(|| TspError::Malformed("no imprint algorithm".into()))?
        .oid()
        .map_err(malformed)?;
    let hashed = hashed.expect(der::OCTET_STRING, "hashedMessage").map_err(malformed)?;
    let serial = hex::encode(field(3, der::INTEGER, "serialNumber")?.body);
    let gen_time = String::from_utf8(field(4, der::GENERALIZED_TIME, "genTime")?.body.to_vec())
        .map_err(|_| TspError::Malformed("genTime is not text".into()))?;
    let (unix, millis) = parse_gen_time(&gen_time)
        .ok_or_else(|| TspError::Malformed(format!("genTime {gen_time:?} is not a DER time")))?;
    let mut accuracy = None;
    let mut nonce = None;
    for item in fields.iter().skip(5) {
        match item.tag {
            der::SEQUENCE => {
                let mut parts = Vec::new();
                for part in item.children().map_err(malformed)? {
                    let value = part.unsigned().map_err(malformed)?;
                    parts.push(match part.tag {
                        der::INTEGER => format!("{value} s"),
                        0x80 => format!("{value} ms"),
                        _ => format!("{value} µs"),
                    });
                }
                accuracy = Some(parts.join(" "));
            }
            der::INTEGER => nonce = Some(item.unsigned().map_err(malformed)?),
            _ => {}
        }
    }
    Ok(TstInfo {
        policy,
        algorithm,
        imprint: hashed.body.to_vec(),
        serial,
        gen_time,
        unix,
        millis,
        accuracy,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_times_with_and_without_fractions() {
        assert_eq!(parse_gen_time("19700101000000Z"), Some((0, 0)));
        assert_eq!(parse_gen_time("20261207185938Z"), Some((1_796_669_978, 0)));
        assert_eq!(parse_gen_time("20261207185938.941Z"), Some((1_796_669_978, 941)));
        assert_eq!(parse_gen_time("20261207185938.9Z"), Some((1_796_669_978, 900)));
        assert_eq!(parse_gen_time("20261207185938.123456Z"), Some((1_796_669_978, 123)));
        for bad in
            ["20261207185938.Z", "20261207185938.940Z", "20261207185938", "2026120718593Z", "20261307185938Z"]
        {
            assert_eq!(parse_gen_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_request_reads_back() {
        let request = request(&[7; 32], 0x998b_f107_7972_d8d0);
        let fields = der::read_all(&request).expect("succeeds").children().expect("succeeds");
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[2].unsigned().expect("succeeds"), 0x998b_f107_7972_d8d0);
        assert!(fields[3].boolean().expect("succeeds"), "certReq");
        assert_eq!(fields[1].children().expect("succeeds")[1].body, &[7; 32]);
    }
}
