//! The explorer's pages: HTML drawn on the server from the snapshot, readable without
//! JavaScript, each with a link to its JSON twin. States are a word and a shape, never a
//! colour alone; every value is escaped.

use std::fmt::Write as _;

use remembrancer_core::bundle::ProofBundle;

use super::snapshot::{AuditView, EvidenceView, MemberView, NamespaceView, Snapshot};
use crate::times::iso8601;

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment for a link (the server decodes it).
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A page: the layout around `body`, with `json` its twin's path.
pub fn page(snapshot: &Snapshot, title: &str, json: &str, body: &str) -> String {
    let federation = esc(&snapshot.overview.federation);
    let title = esc(title);
    let json = esc(json);
    let node = esc(&snapshot.overview.node.did);
    let at = iso8601(snapshot.generated_at_ms / 1000);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {federation} · Remembrancer</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\">\
         <link rel=\"icon\" type=\"image/svg+xml\" href=\"/assets/icon.svg\">\
         <script src=\"/assets/live.js\" defer></script>\
         <link rel=\"alternate\" type=\"application/json\" href=\"{json}\"></head>\n<body>\
         <header><a class=\"brand\" href=\"/\">Remembrancer</a> <span class=\"federation\">{federation}</span>\
         <nav aria-label=\"Views\"><a href=\"/\">Overview</a> <a href=\"/members\">Members</a> \
         <a href=\"/namespaces\">Namespaces</a> <a href=\"/witnesses\">Witnesses</a> \
         <a href=\"/evidence\">Evidence</a> <a href=\"/audit\">Audit</a> <a href=\"/verify\">Verify</a></nav>\
         <form class=\"search\" role=\"search\" method=\"get\" action=\"/search\"><label for=\"q\">Search</label> \
         <input id=\"q\" name=\"q\" type=\"search\" placeholder=\"DID, PeerId, namespace, root\"></form>\
         <span id=\"live\" role=\"status\"></span></header>\n\
         <main><h1>{title}</h1>\n{body}</main>\n\
         <footer><p>Served by <code>{node}</code> from its view at {at}. \
         <a href=\"{json}\">This page as JSON</a>.</p></footer>\n</body></html>\n"
    )
}

/// A member's state as a shape and a word.
fn state(status: &str) -> String {
    let shape = match status {
        "active" => "\u{25CF}",
        "probation" => "\u{25D0}",
        _ => "\u{25CB}",
    };
    format!(
        "<span class=\"state state-{0}\"><span aria-hidden=\"true\">{shape}</span> {0}</span>",
        esc(status)
    )
}

fn yes_no(value: bool, yes: &str, no: &str) -> String {
    if value {
        format!("<span class=\"state state-yes\"><span aria-hidden=\"true\">\u{25CF}</span> {yes}</span>")
    } else {
        format!("<span class=\"state state-no\"><span aria-hidden=\"true\">\u{25CB}</span> {no}</span>")
    }
}

fn optional(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "–".to_string(), |v| esc(&v.to_string()))
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "none yet".to_string(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{} s", ms / 1000),
        Some(ms) => format!("{} min", ms / 60_000),
    }
}

fn member_link(did: &str) -> String {
    format!("<a href=\"/members/{}\"><code>{}</code></a>", segment(did), esc(did))
}

fn namespace_link(namespace: &str) -> String {
    format!("<a href=\"/namespaces/{}\"><code>{}</code></a>", segment(namespace), esc(namespace))
}

/// `/`: the federation at a glance.
pub fn overview(snapshot: &Snapshot) -> String {
    let o = &snapshot.overview;
    let states: Vec<String> = o.members_by_state.iter().map(|(s, n)| format!("{n} {}", state(s))).collect();
    let finality = match (o.node.finality_ms_p50, o.node.finality_ms_p99) {
        (Some(p50), Some(p99)) => format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        _ => "no receipt of its own yet".to_string(),
    };
    let body = format!(
        "<section aria-labelledby=\"federation\"><h2 id=\"federation\">Federation</h2><dl>\
         <dt>Quorum</dt><dd>{} of {} members</dd>\
         <dt>Members</dt><dd>{}</dd>\
         <dt>Registry version</dt><dd>{}</dd>\
         <dt>Namespaces</dt><dd><span data-live=\"overview.namespaces\">{}</span> \
         (<span data-live=\"overview.namespaces_pending\">{}</span> with records not yet final)</dd>\
         <dt>Newest final receipt</dt><dd><span data-live=\"overview.newest_final_age_ms\" data-format=\"age\">{}</span> ago</dd>\
         <dt>Evidence</dt><dd><a href=\"/evidence\"><span data-live=\"overview.evidence_equivocations\">{}</span> equivocations, \
         <span data-live=\"overview.evidence_claims\">{}</span> claims out of turn</a> held; \
         <span data-live=\"overview.evidence_last_day\">{}</span> came in the last 24 h</dd>\
         <dt>Anchors</dt><dd>{}</dd></dl></section>\n\
         <section aria-labelledby=\"node\"><h2 id=\"node\">This node</h2><dl>\
         <dt>DID</dt><dd>{}</dd><dt>PeerId</dt><dd><code>{}</code></dd>\
         <dt>Connected members</dt><dd><span data-live=\"overview.connected_members\">{}</span> of {}</dd>\
         <dt>Commit to final</dt><dd>{}</dd></dl></section>\n",
        o.quorum,
        o.members,
        states.join(", "),
        o.registry_version,
        o.namespaces,
        o.namespaces_pending,
        age(o.newest_final_age_ms),
        o.evidence_equivocations,
        o.evidence_claims,
        o.evidence_last_day,
        esc(&o.anchoring),
        member_link(&o.node.did),
        esc(&o.node.peer_id),
        o.node.connected_members,
        o.members.saturating_sub(1),
        finality,
    );
    page(snapshot, "Overview", "/api/v1/overview", &body)
}

fn member_row(member: &MemberView) -> String {
    let you = if member.is_self { " (this node)" } else { "" };
    format!(
        "<tr><td>{}{you}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        member_link(&member.did),
        state(&member.status),
        member.namespaces.iter().map(|n| namespace_link(n)).collect::<Vec<_>>().join(" "),
        if member.is_self {
            "–".to_string()
        } else {
            yes_no(member.connected, "connected", "not connected")
        },
        member.accepted,
        member.honesty_refusals,
    )
}

/// `/members`: every member, suspended ones included.
pub fn members(snapshot: &Snapshot) -> String {
    let rows: String = snapshot.members.iter().map(member_row).collect();
    let body = format!(
        "<table><caption>{} members; quorum {}</caption><thead><tr><th scope=\"col\">Member</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Namespaces</th><th scope=\"col\">Link</th>\
         <th scope=\"col\">Accepted</th><th scope=\"col\">Refused as dishonest</th></tr></thead>\
         <tbody>\n{rows}</tbody></table>\n",
        snapshot.members.len(),
        snapshot.overview.quorum
    );
    page(snapshot, "Members", "/api/v1/members", &body)
}

/// `/members/{did}`: one member.
pub fn member(snapshot: &Snapshot, member: &MemberView) -> String {
    let history = if member.history.is_empty() {
        "<p>Its state has not changed since the registry this node started from.</p>".to_string()
    } else {
        let items: String = member
            .history
            .iter()
            .map(|change| {
                format!(
                    "<li>version {}: {} \u{2192} {}, {}</li>",
                    change.version,
                    change.from.as_deref().map_or_else(|| "not a member".to_string(), state),
                    change.to.as_deref().map_or_else(|| "removed".to_string(), state),
                    esc(&change.reason)
                )
            })
            .collect();
        format!("<ol>{items}</ol>")
    };
    let witnessing = snapshot.witnesses.rows.iter().find(|r| r.did == member.did).map_or_else(String::new, |row| {
        format!(
            "<dt>Recent receipts of others</dt><dd>a signer of {} of {} (<a href=\"/witnesses\">the grid</a>)</dd>",
            row.hits,
            row.hits + row.absent
        )
    });
    let body = format!(
        "<dl><dt>State</dt><dd>{}</dd><dt>PeerId</dt><dd><code>{}</code></dd>\
         <dt>Namespaces</dt><dd>{}</dd><dt>Connected to this node</dt><dd>{}</dd>\
         <dt>Messages accepted</dt><dd>{}</dd><dt>Refused as dishonest</dt><dd>{}</dd>\
         <dt>Reliability</dt><dd>{}</dd><dt>Last heard from</dt><dd>{}</dd>{witnessing}</dl>\n\
         <h2>State history</h2>{history}\n",
        state(&member.status),
        optional(member.peer_id.as_ref()),
        member.namespaces.iter().map(|n| namespace_link(n)).collect::<Vec<_>>().join(" "),
        if member.is_self { "this node".to_string() } else { yes_no(member.connected, "yes", "no") },
        member.accepted,
        member.honesty_refusals,
        member.reliability.map_or_else(|| "–".to_string(), |r| format!("{:.0} %", r * 100.0)),
        member.last_seen_ms.map_or_else(|| "never".to_string(), |ms| iso8601(ms / 1000)),
    );
    let json = format!("/api/v1/members/{}", segment(&member.did));
    page(snapshot, &member.did, &json, &body)
}

fn namespace_row(namespace: &NamespaceView) -> String {
    let live =
        |field: &str| format!("data-namespace=\"{}\" data-field=\"{field}\"", esc(&namespace.namespace));
    format!(
        "<tr><td>{}</td><td>{}</td><td {}>{}</td><td {}>{}</td><td>{}</td><td>{}</td></tr>\n",
        namespace_link(&namespace.namespace),
        namespace.owner.as_deref().map_or_else(|| "–".to_string(), member_link),
        live("latest_size"),
        optional(namespace.latest_size),
        live("final_size"),
        namespace.final_size,
        namespace.finalized_at.map_or_else(|| "–".to_string(), iso8601),
        match namespace.pending {
            Some(pending) => yes_no(!pending, "final", "pending"),
            None => "–".to_string(),
        },
    )
}

/// `/namespaces`: every namespace known.
pub fn namespaces(snapshot: &Snapshot) -> String {
    let rows: String = snapshot.namespaces.iter().map(namespace_row).collect();
    let body = format!(
        "<table><caption>{} namespaces (latest sizes are known for this node's own)</caption><thead><tr>\
         <th scope=\"col\">Namespace</th><th scope=\"col\">Owner</th><th scope=\"col\">Latest size</th>\
         <th scope=\"col\">Final size</th><th scope=\"col\">Finalized</th><th scope=\"col\">State</th>\
         </tr></thead><tbody>\n{rows}</tbody></table>\n",
        snapshot.namespaces.len()
    );
    page(snapshot, "Namespaces", "/api/v1/namespaces", &body)
}

/// `/namespaces/{namespace}`: one namespace and its newest final receipt.
pub fn namespace(snapshot: &Snapshot, namespace: &NamespaceView) -> String {
    let signers: Vec<String> =
        namespace.signers.iter().map(|s| format!("<li>{}</li>", member_link(s))).collect();
    let body = format!(
        "<dl><dt>Owner</dt><dd>{}</dd><dt>Latest size</dt><dd>{}</dd>\
         <dt>Final size</dt><dd>{}</dd><dt>Final root</dt><dd><code>{}</code></dd>\
         <dt>Finalized</dt><dd>{}</dd><dt>Registry version</dt><dd>{}</dd>\
         <dt>Anchored at</dt><dd>{}</dd><dt>Commit to final (this node's own)</dt><dd>{}</dd></dl>\n\
         <h2>Signers of the newest final receipt</h2><ol>{}</ol>\n\
         <h2>The signed checkpoint</h2><pre class=\"statement\">{}</pre>\n\
         <p><a href=\"/namespaces/{}/tree\">The tree's shape</a>.</p>\n",
        namespace.owner.as_deref().map_or_else(|| "none listed".to_string(), member_link),
        optional(namespace.latest_size),
        namespace.final_size,
        optional(namespace.final_root.as_ref()),
        namespace.finalized_at.map_or_else(|| "not yet".to_string(), iso8601),
        optional(namespace.registry_version),
        optional(namespace.anchor.as_ref()),
        match (namespace.finality_ms_p50, namespace.finality_ms_p95) {
            (Some(p50), Some(p95)) => format!("p50 {p50:.1} ms, p95 {p95:.1} ms"),
            _ =>
                "not timed here (another node's namespace, or none final since this node started)".to_string(),
        },
        signers.join(""),
        namespace.note.as_deref().map_or_else(|| "no final receipt yet".to_string(), esc),
        segment(&namespace.namespace),
    );
    let body = if namespace.latest_size.is_some() {
        let name = segment(&namespace.namespace);
        format!(
            "{body}<h2 id=\"lookup\">A record and its proof</h2>\
             <form method=\"get\" action=\"/namespaces/{name}/records\" aria-labelledby=\"lookup\">\
             <label for=\"index\">Record index</label> \
             <input id=\"index\" name=\"index\" type=\"number\" min=\"0\" required> \
             <button type=\"submit\">Show its proof</button></form>\n"
        )
    } else {
        format!(
            "{body}<p>This node does not own {}: its owner's explorer gives its records' proofs.</p>\n",
            esc(&namespace.namespace)
        )
    };
    let json = format!("/api/v1/namespaces/{}", segment(&namespace.namespace));
    page(snapshot, &namespace.namespace, &json, &body)
}

/// `/namespaces/{namespace}/records/{index}`: a record, its inclusion proof and the signed
/// checkpoint it is under, with the bundle to download.
pub fn record(snapshot: &Snapshot, namespace: &str, bundle: &ProofBundle) -> String {
    let proof = &bundle.proof;
    let record = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.record.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| text.chars().all(|c| !c.is_control() || c == '\n'))
        .map_or_else(
            || format!("<code>{}</code> (base64)", esc(&bundle.record)),
            |text| format!("<q>{}</q>", esc(&text)),
        );
    let path: String = proof
        .path
        .iter()
        .map(|step| {
            format!(
                "<li>{} <code>{}</code></li>",
                esc(&format!("{:?}", step.position).to_lowercase()),
                esc(&step.hash.to_string())
            )
        })
        .collect();
    let download = format!(
        "/api/v1/namespaces/{}/records/{}?size={}&amp;download",
        segment(namespace),
        proof.leaf_index,
        proof.tree_size
    );
    let verify = format!("/verify?namespace={}&amp;index={}", segment(namespace), proof.leaf_index);
    let body = format!(
        "<dl><dt>Namespace</dt><dd>{}</dd><dt>Index</dt><dd>{}</dd><dt>Record</dt><dd>{record}</dd>\
         <dt>Leaf hash</dt><dd><code>{}</code></dd><dt>Under the final checkpoint of size</dt><dd>{}</dd>\
         <dt>Root</dt><dd><code>{}</code></dd></dl>\n\
         <h2>Inclusion path ({} hashes, leaf to root)</h2><ol class=\"path\">{path}</ol>\n\
         <h2>The cosigned checkpoint</h2><pre class=\"statement\">{}</pre>\n\
         <p><a href=\"{verify}\">Verify it in this browser</a>, or \
         <a href=\"{download}\" download>download the proof bundle</a> and check it offline with \
         <code>remembrancer verify proof FILE --registry REGISTRY</code>.</p>\n",
        namespace_link(namespace),
        proof.leaf_index,
        esc(&proof.leaf.to_string()),
        proof.tree_size,
        esc(&proof.root.to_string()),
        proof.path.len(),
        esc(&bundle.checkpoint),
    );
    let json = format!("/api/v1/namespaces/{}/records/{}", segment(namespace), proof.leaf_index);
    page(snapshot, &format!("{namespace} record {}", proof.leaf_index), &json, &body)
}

/// `/verify`: a proof bundle checked in the browser (`assets/verify-page.mjs`).
pub fn verify(snapshot: &Snapshot) -> String {
    let body = "<p>Paste a proof bundle (what <code>remembrancer proof</code> writes, or a record's \
         page gives) or an evidence file (<code>federation evidence export</code>), or follow a link here \
         from a record or from evidence. It is checked here, in this browser, against the registry this \
         node serves: a bundle's checkpoint signatures and quorum, then the record's inclusion under its \
         root; evidence's two checkpoints, each signed by the accused, of one size with two roots. \
         This needs JavaScript; without it, <code>remembrancer verify proof</code> and \
         <code>verify evidence</code> check the same offline.</p>\n\
         <form id=\"verifier\"><label for=\"bundle\">Proof bundle or evidence (JSON)</label>\
         <textarea id=\"bundle\" rows=\"12\" spellcheck=\"false\"></textarea>\
         <button id=\"verify\" type=\"button\">Verify in this browser</button></form>\n\
         <p id=\"summary\" role=\"status\"></p><ol id=\"checks\"></ol>\n\
         <script type=\"module\" src=\"/assets/verify-page.mjs\"></script>\n";
    page(snapshot, "Verify a proof", "/api/v1/overview", body)
}

/// The perfect subtrees a tree of `size` leaves is made of, left to right: (first leaf, leaves).
pub fn perfect_subtrees(size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for bit in (0..64).rev() {
        let leaves = 1u64 << bit;
        if size & leaves != 0 {
            out.push((start, leaves));
            start += leaves;
        }
    }
    out
}

fn subtrees_svg(title: &str, size: u64) -> String {
    let parts = perfect_subtrees(size);
    let (width, height) = (640u64, 56u64);
    let slot = width / parts.len().max(1) as u64;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\">",
        esc(title)
    );
    for (i, (start, leaves)) in parts.iter().enumerate() {
        let x = i as u64 * slot;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"4\" width=\"{}\" height=\"28\" class=\"bar\"><title>leaves {start} to {}: a perfect subtree of height {}</title></rect>\
             <text x=\"{}\" y=\"48\" class=\"label\" text-anchor=\"middle\">2^{}</text>",
            x + 1,
            slot.saturating_sub(2),
            start + leaves - 1,
            leaves.trailing_zeros(),
            x + slot / 2,
            leaves.trailing_zeros(),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn subtrees_list(size: u64) -> String {
    let items: String = perfect_subtrees(size)
        .iter()
        .map(|(start, leaves)| {
            format!(
                "<li>leaves {start} to {}: {leaves} leaves, height {}</li>",
                start + leaves - 1,
                leaves.trailing_zeros()
            )
        })
        .collect();
    format!("<ol>{items}</ol>")
}

/// `/namespaces/{namespace}/tree`: the tree's sizes split into perfect subtrees (RFC 9162
/// builds its root from them, largest first), final and latest, and a leaf to prove.
pub fn tree(snapshot: &Snapshot, namespace: &NamespaceView) -> String {
    let name = segment(&namespace.namespace);
    let latest = match namespace.latest_size {
        Some(latest) if latest > namespace.final_size => format!(
            "<h2>Latest: {latest} records ({} not yet final)</h2>\n{}\n{}\n",
            latest - namespace.final_size,
            subtrees_svg(&format!("The latest tree of {latest} leaves"), latest),
            subtrees_list(latest)
        ),
        _ => String::new(),
    };
    let lookup = if namespace.latest_size.is_some() && namespace.final_size > 0 {
        format!(
            "<h2 id=\"leaf\">A leaf's inclusion path</h2>\
             <form method=\"get\" action=\"/namespaces/{name}/records\" aria-labelledby=\"leaf\">\
             <label for=\"leaf-index\">Leaf index (0 to {})</label> \
             <input id=\"leaf-index\" name=\"index\" type=\"number\" min=\"0\" max=\"{}\" required> \
             <button type=\"submit\">Show its path</button></form>\n",
            namespace.final_size - 1,
            namespace.final_size - 1
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p>A tree of n leaves is the perfect subtrees of n's binary digits, largest first; \
         its root hashes their roots together from the right.</p>\n\
         <h2>Final: {} records</h2>\n{}\n{}\n{latest}{lookup}",
        namespace.final_size,
        subtrees_svg(&format!("The final tree of {} leaves", namespace.final_size), namespace.final_size),
        subtrees_list(namespace.final_size),
    );
    let json = format!("/api/v1/namespaces/{name}");
    page(snapshot, &format!("{} tree", namespace.namespace), &json, &body)
}

/// A record whose proof cannot be given, and why.
pub fn no_proof(snapshot: &Snapshot, namespace: &str, index: u64, why: &str) -> String {
    let body = format!("<p>{}</p><p>Back to {}.</p>\n", esc(why), namespace_link(namespace));
    let json = format!("/api/v1/namespaces/{}/records/{index}", segment(namespace));
    page(snapshot, &format!("{namespace} record {index}"), &json, &body)
}

fn evidence_item(evidence: &EvidenceView) -> String {
    let what = match evidence.kind.as_str() {
        "equivocation" => format!(
            "two checkpoints of {} at size {}",
            evidence.namespace.as_deref().map_or_else(String::new, namespace_link),
            optional(evidence.size)
        ),
        _ => format!("an epoch anchor for epoch {} claimed out of turn", optional(evidence.epoch)),
    };
    let statements: String =
        evidence.statements.iter().map(|s| format!("<pre class=\"statement\">{}</pre>", esc(s))).collect();
    let id = segment(&evidence.id);
    let check = if evidence.kind == "equivocation" {
        format!("<a href=\"/verify?evidence={id}\">Check it in this browser</a>, or ")
    } else {
        String::new()
    };
    format!(
        "<li id=\"evidence-{id}\"><p>{} signed {what}.</p>{statements}<p>{check}<a href=\"/api/v1/evidence/{id}?download\" download>download \
         the evidence</a> and check it offline with <code>remembrancer verify evidence FILE --registry REGISTRY</code>.</p></li>\n",
        member_link(&evidence.signer)
    )
}

/// `/evidence`: what this node holds against members, with the signed statements verbatim.
pub fn evidence(snapshot: &Snapshot) -> String {
    let body = if snapshot.evidence.is_empty() {
        "<p>No evidence: no member has been caught signing two histories or claiming out of turn.</p>\n"
            .to_string()
    } else {
        format!(
            "<ol class=\"evidence\">\n{}</ol>\n",
            snapshot.evidence.iter().map(evidence_item).collect::<String>()
        )
    };
    page(snapshot, "Evidence", "/api/v1/evidence", &body)
}

/// A cell of the witnesses' grid: a shape, and the word for whoever cannot see it.
fn witness_cell(cell: &str) -> String {
    let shape = match cell {
        "owner" => "\u{25C6}",
        "cosigned" => "\u{2713}",
        "late" => "\u{25F7}",
        _ => "\u{25CB}",
    };
    format!(
        "<td class=\"cell-{0}\"><span aria-hidden=\"true\">{shape}</span><span class=\"sr\">{0}</span></td>",
        esc(cell)
    )
}

/// A bar chart drawn on the server: `bars` as (label, value), with a title and a description.
pub fn bar_chart(title: &str, description: &str, bars: &[(String, u64)]) -> String {
    let (width, height, left, bottom) = (640u64, 200u64, 40u64, 36u64);
    let top = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let slot = (width - left) / (bars.len().max(1) as u64);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\"><title id=\"chart-title\">{}</title><desc id=\"chart-desc\">{}</desc>\
         <line x1=\"{left}\" y1=\"{axis}\" x2=\"{width}\" y2=\"{axis}\" class=\"axis\"/>\
         <text x=\"0\" y=\"14\" class=\"label\">{top}</text><text x=\"0\" y=\"{axis}\" class=\"label\">0</text>",
        esc(title),
        esc(description),
        axis = height - bottom,
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let bar = (height - bottom - 10) * value / top;
        let x = left + i as u64 * slot;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bar}\" class=\"bar\"><title>{}: {value}</title></rect>\
             <text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"middle\">{}</text>",
            x + 2,
            height - bottom - bar,
            slot.saturating_sub(4),
            esc(label),
            x + slot / 2,
            height - bottom + 16,
            esc(label),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `/witnesses`: who signed each recent final receipt, and this node's finality times.
pub fn witnesses(snapshot: &Snapshot) -> String {
    let w = &snapshot.witnesses;
    let columns: String = w
        .checkpoints
        .iter()
        .map(|c| {
            format!(
                "<th scope=\"col\"><a href=\"/namespaces/{}\">{}</a> @{}</th>",
                segment(&c.namespace),
                esc(&c.namespace),
                c.size
            )
        })
        .collect();
    let rows: String = w
        .rows
        .iter()
        .map(|row| {
            format!(
                "<tr><th scope=\"row\">{} {}</th><td>{}</td><td>{}</td>{}</tr>\n",
                member_link(&row.did),
                state(&row.status),
                row.hits,
                row.absent,
                row.cells.iter().map(|c| witness_cell(c)).collect::<String>()
            )
        })
        .collect();
    let bars: Vec<(String, u64)> = w
        .finality_histogram
        .iter()
        .enumerate()
        .map(|(i, (upper, count))| {
            let label = if i + 1 == w.finality_histogram.len() {
                format!(">{}", upper / 2)
            } else {
                format!("≤{upper}")
            };
            (label, *count)
        })
        .collect();
    let body = format!(
        "<p>Each column is a recent final receipt this node saw (newest first); each row a member: \
         <span aria-hidden=\"true\">◆</span> owner (it anchored the checkpoint), \
         <span aria-hidden=\"true\">✓</span> cosigned, \
         <span aria-hidden=\"true\">◷</span> late (cosigned after the quorum was reached), \
         <span aria-hidden=\"true\">○</span> absent: not among the receipt's signers (a receipt carries \
         the signatures that made the quorum; a cosignature that came after it is not in it).</p>\n\
         <div class=\"grid\"><table><caption>{} members × {} receipts</caption><thead><tr>\
         <th scope=\"col\">Member</th><th scope=\"col\">Cosigned</th><th scope=\"col\">Absent</th>{columns}</tr></thead>\
         <tbody>\n{rows}</tbody></table></div>\n\
         <h2>This node's commit to final</h2>\n{}\n\
         <p>Receipts by commit-to-final time in milliseconds: the last 1024 of this node's own.</p>\n",
        w.rows.len(),
        w.checkpoints.len(),
        bar_chart(
            "Commit to final, this node's own receipts",
            "Receipts per latency bucket, in milliseconds, of the last 1024 own receipts",
            &bars
        ),
    );
    page(snapshot, "Witnesses", "/api/v1/witnesses", &body)
}

/// `/audit`: the messages this node refused, newest first.
pub fn audit(snapshot: &Snapshot) -> String {
    let body = if snapshot.audit.is_empty() {
        "<p>This node has refused no message.</p>\n".to_string()
    } else {
        let rows: String = snapshot
            .audit
            .iter()
            .map(|AuditView { at_ms, peer, what, detail }| {
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                    iso8601(at_ms / 1000),
                    esc(peer),
                    esc(what),
                    esc(detail)
                )
            })
            .collect();
        format!(
            "<table><caption>The last {} refusals</caption><thead><tr><th scope=\"col\">When</th>\
             <th scope=\"col\">From</th><th scope=\"col\">Why</th><th scope=\"col\">What</th></tr></thead>\
             <tbody>\n{rows}</tbody></table>\n",
            snapshot.audit.len()
        )
    };
    page(snapshot, "Audit trail", "/api/v1/audit", &body)
}

/// What a search matched: (the page, what it is).
pub fn search_matches(snapshot: &Snapshot, query: &str) -> Vec<(String, String)> {
    let query = query.trim();
    let wanted = query.to_ascii_lowercase();
    let wanted_root = wanted.trim_start_matches("sha256:");
    let mut found = Vec::new();
    if wanted.is_empty() {
        return found;
    }
    for member in &snapshot.members {
        let exact = member.did == query || member.peer_id.as_deref() == Some(query);
        if exact || member.did.to_ascii_lowercase().contains(&wanted) {
            found.push((format!("/members/{}", segment(&member.did)), format!("member {}", member.did)));
        }
    }
    for namespace in &snapshot.namespaces {
        let root = namespace.final_root.as_deref().unwrap_or_default().trim_start_matches("sha256:");
        let by_root = wanted_root.len() >= 8 && root.starts_with(wanted_root);
        if by_root || namespace.namespace.to_ascii_lowercase().contains(&wanted) {
            let what = if by_root {
                format!(
                    "namespace {} (final root {})",
                    namespace.namespace,
                    namespace.final_root.as_deref().unwrap_or("")
                )
            } else {
                format!("namespace {}", namespace.namespace)
            };
            found.push((format!("/namespaces/{}", segment(&namespace.namespace)), what));
        }
    }
    for evidence in &snapshot.evidence {
        let by_id = wanted.len() >= 4 && evidence.id.starts_with(&wanted);
        if by_id || evidence.signer == query {
            found.push((
                format!("/evidence#evidence-{}", segment(&evidence.id)),
                format!("evidence {} against {}", evidence.id, evidence.signer),
            ));
        }
    }
    found
}

/// `/search?q=…` when it did not lead to one page: what matched, or that nothing did.
pub fn search(snapshot: &Snapshot, query: &str, matches: &[(String, String)]) -> String {
    let body = if matches.is_empty() {
        format!(
            "<p>Nothing here matches <q>{}</q>. Search by a member's DID or PeerId, a namespace's name, \
             or the first 8 or more hex digits of a final root.</p>\n",
            esc(query)
        )
    } else {
        let items: String = matches
            .iter()
            .map(|(href, what)| format!("<li><a href=\"{}\">{}</a></li>", esc(href), esc(what)))
            .collect();
        format!("<p>{} matches for <q>{}</q>:</p><ul>{items}</ul>\n", matches.len(), esc(query))
    };
    page(snapshot, "Search", "/api/v1/overview", &body)
}

/// A page for what is not there.
pub fn not_found(snapshot: &Snapshot, what: &str) -> String {
    let body = format!(
        "<p>{} is not known to this node. The <a href=\"/\">overview</a> lists what it knows.</p>\n",
        esc(what)
    );
    page(snapshot, "Not found", "/api/v1/overview", &body)
}

/// The stylesheet: light and dark schemes, no web fonts.
pub const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1b1f;--bg:#ffffff;--muted:#4a4a55;--line:#c8c8d0;--link:#0b57d0}\n\
@media (prefers-color-scheme: dark){:root{--fg:#e8e8ee;--bg:#121216;--muted:#b4b4c0;--line:#3a3a44;--link:#8ab4f8}}\n\
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}\n\
header,main,footer{max-width:72rem;margin:0 auto;padding:0.75rem 1rem}\n\
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:baseline;border-bottom:1px solid var(--line)}\n\
.brand{font-weight:700}nav{display:flex;gap:1rem}a{color:var(--link)}\n\
footer{color:var(--muted);border-top:1px solid var(--line);font-size:0.9rem}\n\
dl{display:grid;grid-template-columns:max-content 1fr;gap:0.25rem 1rem}dt{font-weight:600}dd{margin:0}\n\
table{border-collapse:collapse;width:100%}caption{text-align:left;color:var(--muted);padding:0.25rem 0}\n\
th,td{text-align:left;padding:0.3rem 0.5rem;border-bottom:1px solid var(--line);vertical-align:top}\n\
code,pre{font-family:ui-monospace,monospace;font-size:0.9rem;overflow-wrap:anywhere}\n\
pre.statement{white-space:pre-wrap;border:1px solid var(--line);padding:0.5rem}\n\
input,button{font:inherit;padding:0.2rem 0.4rem}\n\
textarea{display:block;width:100%;font-family:ui-monospace,monospace;font-size:0.85rem;margin:0.25rem 0 0.5rem}\n\
#checks{list-style:none;padding:0}\n\
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}\n\
.grid{overflow-x:auto;position:relative}.grid td{text-align:center}.grid th{white-space:nowrap}\n\
.chart .bar{fill:var(--link)}.chart .axis{stroke:var(--muted)}.chart .label{fill:var(--fg);font-size:11px}\n\
form.search{margin-left:auto}\n";

/// The icon: a small tree of three nodes.
pub const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<path d=\"M8 4v4M8 8L4 12M8 8l4 4\" stroke=\"#0b57d0\" stroke-width=\"1.5\" fill=\"none\"/>\
<circle cx=\"8\" cy=\"3\" r=\"2.2\" fill=\"#0b57d0\"/><circle cx=\"4\" cy=\"13\" r=\"2.2\" fill=\"#0b57d0\"/>\
<circle cx=\"12\" cy=\"13\" r=\"2.2\" fill=\"#0b57d0\"/></svg>\n";

/// The pages' live values (`assets/live.js`).
pub const LIVE_JS: &str = include_str!("assets/live.js");

/// The worker that holds one event stream for every tab (`assets/live-worker.js`).
pub const LIVE_WORKER_JS: &str = include_str!("assets/live-worker.js");

/// The verifier the browser runs (`assets/verifier.mjs`).
pub const VERIFIER_JS: &str = include_str!("assets/verifier.mjs");

/// The `/verify` page's script (`assets/verify-page.mjs`).
pub const VERIFY_PAGE_JS: &str = include_str!("assets/verify-page.mjs");
