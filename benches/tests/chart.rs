//! The run's picture: one bar per ratio, one row per open-loop run, names escaped, a whole document.

use kassa_bench::chart::render_svg;
use kassa_bench::report::RunResult;

fn result() -> RunResult {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/results/2026-12-02T02-45-16Z.json")).expect("a stored result");
    serde_json::from_str(&text).expect("schema")
}

#[test]
fn every_ratio_is_a_bar_and_every_open_loop_run_a_row() {
    let r = result();
    let svg = render_svg(&r);
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    let bars = svg.matches("<rect ").count() - 1; // the background
    assert_eq!(bars, r.ratios.iter().filter(|x| x.value.is_some()).count());
    let opens = r.measurements.iter().filter(|m| m.target_rate_per_s.is_some()).count();
    assert_eq!(svg.matches(r##"stroke="#1565c0""##).count(), opens);
    for x in &r.ratios {
        assert!(svg.contains(&x.name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")), "{} missing", x.name);
    }
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
}

#[test]
fn a_name_with_markup_is_escaped() {
    let mut r = result();
    r.ratios[0].name = "a <b> & c".into();
    let svg = render_svg(&r);
    assert!(svg.contains("a &lt;b&gt; &amp; c") && !svg.contains("<b>"));
}
