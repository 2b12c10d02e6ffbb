//! Run outputs: the CSV time series, the SVG chart of finality over time with partitions
//! shaded, and the mean/min/max of a sweep over seeds. All text, all deterministic.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::RunReport;

/// The time series as CSV, one row per second of virtual time.
pub fn to_csv(report: &RunReport) -> String {
    let mut out = String::from("time_s,receipts_finalized,messages,bytes,evidence,nodes_up,partitioned\n");
    for row in &report.series {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            row.time_s,
            row.receipts_finalized,
            row.messages,
            row.bytes,
            row.evidence,
            row.nodes_up,
            u8::from(row.partitioned)
        );
    }
    out
}

/// An SVG chart: receipts finalized over virtual time, partitions shaded.
pub fn to_svg(report: &RunReport) -> String {
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 400.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let duration_s = (report.summary.duration_ms as f64 / 1000.0).max(1.0);
    let max_receipts = report.series.iter().map(|r| r.receipts_finalized).max().unwrap_or(0).max(1) as f64;
    let x = |t_s: f64| LEFT + plot_w * (t_s / duration_s).clamp(0.0, 1.0);
    let y = |n: f64| TOP + plot_h * (1.0 - n / max_receipts);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="14">{}: receipts finalized over time (seed {}, {} nodes, quorum {})</text>"#,
        escape(&report.summary.scenario),
        report.summary.seed,
        report.summary.nodes,
        report.summary.quorum
    );
    for (from_ms, until_ms) in &report.partitions {
        let x0 = x(*from_ms as f64 / 1000.0);
        let x1 = x(*until_ms as f64 / 1000.0);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#f4c7c3" opacity="0.6"><title>partition {from_ms}-{until_ms} ms</title></rect>"##,
            (x1 - x0).max(1.0)
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ =
        writeln!(svg, r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#, TOP + plot_h);
    for i in 0..=5 {
        let t = duration_s * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}s</text>"#,
            x(t),
            TOP + plot_h + 18.0,
            t
        );
        let n = max_receipts * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
            LEFT - 6.0,
            y(n) + 4.0,
            n
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">virtual time</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
    for row in &report.series {
        let _ = write!(points, " {:.1},{:.1}", x(row.time_s as f64), y(row.receipts_finalized as f64));
    }
    let _ = writeln!(svg, r##"<polyline points="{points}" fill="none" stroke="#1a73e8" stroke-width="2"/>"##);
    let _ = writeln!(svg, "</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Mean, minimum and maximum of one figure over a sweep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(Spread {
        mean: sum / values.len() as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// A sweep over seeds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepSummary {
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Receipts finalized.
    pub receipts_finalized: Option<Spread>,
    /// Median time to finality, ms.
    pub finality_ms_p50: Option<Spread>,
    /// p99 time to finality, ms.
    pub finality_ms_p99: Option<Spread>,
    /// Deliveries per receipt.
    pub messages_per_receipt: Option<Spread>,
    /// Evidence raised.
    pub evidence_raised: Option<Spread>,
    /// Runs with invariant violations.
    pub runs_with_violations: usize,
}

/// Mean/min/max over the runs of a sweep.
pub fn sweep_summary(reports: &[RunReport]) -> SweepSummary {
    let collect =
        |f: &dyn Fn(&RunReport) -> Option<f64>| -> Vec<f64> { reports.iter().filter_map(f).collect() };
    SweepSummary {
        seeds: reports.iter().map(|r| r.summary.seed).collect(),
        receipts_finalized: spread(&collect(&|r| Some(r.summary.receipts_finalized as f64))),
        finality_ms_p50: spread(&collect(&|r| r.summary.finality_ms_p50.map(|v| v as f64))),
        finality_ms_p99: spread(&collect(&|r| r.summary.finality_ms_p99.map(|v| v as f64))),
        messages_per_receipt: spread(&collect(&|r| r.summary.messages_per_receipt)),
        evidence_raised: spread(&collect(&|r| Some(r.summary.evidence_raised as f64))),
        runs_with_violations: reports.iter().filter(|r| !r.summary.violations.is_empty()).count(),
    }
}
