//! The picture of a run, written beside its JSON: every ratio against its target, and the latency
//! percentiles of the open-loop runs, both on log scales (the figures span three orders of magnitude).

use std::fmt::Write as _;

use crate::report::RunResult;

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 330.0;
const PLOT_W: f64 = WIDTH - LABEL_W - 40.0;
const ROW_H: f64 = 22.0;
const RATIO_MIN: f64 = 0.01;
const RATIO_MAX: f64 = 10.0;
const MS_MIN: f64 = 0.1;
const MS_MAX: f64 = 10_000.0;

/// x of `v` on a log axis from `lo` to `hi` (clamped).
fn log_x(v: f64, lo: f64, hi: f64) -> f64 {
    let v = v.clamp(lo, hi);
    LABEL_W + PLOT_W * (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Vertical grid lines and their labels at each power of ten from `lo` to `hi`.
fn grid(out: &mut String, top: f64, bottom: f64, lo: f64, hi: f64, unit: &str) {
    let mut v = lo;
    while v <= hi * 1.0001 {
        let x = log_x(v, lo, hi);
        let _ = writeln!(out, r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#ddd"/>"##);
        let label = if v < 1.0 { format!("{v:.2}").trim_end_matches('0').to_owned() } else { format!("{v:.0}") };
        let _ = writeln!(out, r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{label}{unit}</text>"#, bottom + 14.0);
        v *= 10.0;
    }
}

/// A section's title just above its plot.
fn heading(out: &mut String, top: f64, text: &str) {
    let _ = writeln!(out, r#"<text x="12" y="{:.0}" font-size="13">{}</text>"#, top - 12.0, escape(text));
}

/// The run as an SVG document.
pub fn render_svg(r: &RunResult) -> String {
    let opens: Vec<_> = r.measurements.iter().filter(|m| m.target_rate_per_s.is_some() && m.latency.count > 0).collect();
    let ratios: Vec<_> = r.ratios.iter().filter(|x| x.value.is_some()).collect();
    let ratio_top = 60.0;
    let ratio_bottom = ratio_top + ROW_H * ratios.len() as f64;
    let lat_top = ratio_bottom + 80.0;
    let lat_bottom = lat_top + ROW_H * 1.5 * opens.len() as f64;
    let height = lat_bottom + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let started = crate::report::utc_stamp(r.started_at_us / 1_000_000);
    let _ = writeln!(out, r#"<text x="12" y="22" font-size="15" font-weight="bold">Kassa benchmark run {started}</text>"#);
    heading(&mut out, ratio_top, "Same-run ratios (log scale); tick: target; green met, red missed, grey information");
    grid(&mut out, ratio_top, ratio_bottom, RATIO_MIN, RATIO_MAX, "×");
    for (i, x) in ratios.iter().enumerate() {
        let y = ratio_top + ROW_H * i as f64;
        let value = x.value.unwrap_or(0.0);
        let colour = match x.met {
            Some(true) => "#2e7d32",
            Some(false) => "#c62828",
            None => "#9e9e9e",
        };
        let end = log_x(value, RATIO_MIN, RATIO_MAX);
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + 15.0,
            escape(&x.name)
        );
        let _ = writeln!(
            out,
            r#"<rect x="{LABEL_W}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
            y + 4.0,
            end - LABEL_W,
            ROW_H - 8.0
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}" font-size="11">{value:.3}</text>"#, end + 4.0, y + 15.0);
        if let Some(t) = x.target_min {
            let tx = log_x(t, RATIO_MIN, RATIO_MAX);
            let _ = writeln!(
                out,
                r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                y + 1.0,
                y + ROW_H - 1.0
            );
        }
    }
    heading(&mut out, lat_top, "Open loop: latency from the intended send (log ms): p50 ●, p99 ◆, p99.9 ▲, max ✕");
    grid(&mut out, lat_top, lat_bottom, MS_MIN, MS_MAX, " ms");
    for (i, m) in opens.iter().enumerate() {
        let y = lat_top + ROW_H * 1.5 * i as f64 + ROW_H * 0.75;
        let label = format!("{} @{:.0}/s", m.id, m.target_rate_per_s.unwrap_or(0.0));
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + 4.0,
            escape(&label)
        );
        let l = &m.latency;
        let points = [(l.p50_us, "●"), (l.p99_us, "◆"), (l.p999_us, "▲"), (l.max_us, "✕")];
        let first = log_x(l.p50_us as f64 / 1000.0, MS_MIN, MS_MAX);
        let last = log_x(l.max_us as f64 / 1000.0, MS_MIN, MS_MAX);
        let _ = writeln!(out, r##"<line x1="{first:.1}" y1="{y:.1}" x2="{last:.1}" y2="{y:.1}" stroke="#1565c0"/>"##);
        for (us, mark) in points {
            let x = log_x(us as f64 / 1000.0, MS_MIN, MS_MAX);
            let _ =
                writeln!(out, r##"<text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#1565c0">{mark}</text>"##, y + 4.0);
        }
    }
    out.push_str("</svg>\n");
    out
}
