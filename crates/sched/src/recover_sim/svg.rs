//! The sweep's plot, as a self-contained SVG written by hand (no
//! dependency): makespan of every policy and T_LB against cluster size,
//! both axes logarithmic.

use std::fmt::Write as _;

use super::report::PolicyName;

/// One cluster size of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub chunks: u32,
    pub racks: usize,
    pub extents: u64,
    pub t_lb_us: u64,
    pub makespans: Vec<(PolicyName, u64)>,
}

const W: f64 = 800.0;
const H: f64 = 500.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 590.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 420.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(p: Option<PolicyName>) -> &'static str {
    match p {
        Some(PolicyName::Cairn) => "#1b9e77",
        Some(PolicyName::Pd) => "#d95f02",
        Some(PolicyName::Hdfs) => "#7570b3",
        Some(PolicyName::Ceph) => "#e7298a",
        None => "#444444",
    }
}

/// A marker centred on (x, y).
fn marker(s: &mut String, p: Option<PolicyName>, x: f64, y: f64) {
    let c = color(p);
    let _ = match p {
        Some(PolicyName::Cairn) => {
            writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{c}"/>"#)
        }
        Some(PolicyName::Pd) => writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{c}"/>"#,
            x - 4.0,
            y - 4.0
        ),
        Some(PolicyName::Hdfs) => writeln!(
            s,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - 5.0,
            x - 5.0,
            y + 4.0,
            x + 5.0,
            y + 4.0
        ),
        Some(PolicyName::Ceph) => writeln!(
            s,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - 5.0,
            x + 5.0,
            y,
            x,
            y + 5.0,
            x - 5.0,
            y
        ),
        None => writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="none" stroke="{c}"/>"#
        ),
    };
}

/// One line of the plot: its policy (None: the bound), label and points.
type Series = (Option<PolicyName>, String, Vec<(f64, f64)>);

/// The plot of a sweep; `subtitle` says what was held constant.
pub fn plot(points: &[SweepPoint], title: &str, subtitle: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="43" text-anchor="middle" fill="#555">{}</text>"##,
        (LEFT + RIGHT) / 2.0,
        esc(subtitle)
    );
    let secs: Vec<f64> = points
        .iter()
        .flat_map(|p| {
            std::iter::once(p.t_lb_us)
                .chain(p.makespans.iter().map(|m| m.1))
                .map(|us| us as f64 / 1e6)
        })
        .filter(|v| *v > 0.0)
        .collect();
    if points.is_empty() || secs.is_empty() {
        let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"{TOP}\">no data</text></svg>");
        return s;
    }
    let lo_dec = secs
        .iter()
        .copied()
        .fold(f64::MAX, f64::min)
        .log10()
        .floor();
    let hi_dec = secs
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(lo_dec + 1.0);
    let (xmin, xmax) = points.iter().fold((f64::MAX, 0.0f64), |(a, b), p| {
        let x = f64::from(p.chunks.max(1)).log2();
        (a.min(x), b.max(x))
    });
    let xspan = (xmax - xmin).max(1.0);
    let px = |chunks: u32| {
        LEFT + 20.0 + (f64::from(chunks.max(1)).log2() - xmin) / xspan * (RIGHT - LEFT - 40.0)
    };
    let py =
        |sec: f64| BOTTOM - (sec.max(1e-9).log10() - lo_dec) / (hi_dec - lo_dec) * (BOTTOM - TOP);
    // Grid: decades and their 2x, 5x.
    let mut dec = lo_dec;
    while dec <= hi_dec {
        for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = m * 10f64.powf(dec);
            if v.log10() > hi_dec + 1e-9 {
                continue;
            }
            let y = py(v);
            let _ = writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="{}" stroke-width="1"/>"#,
                if major { "#cccccc" } else { "#eeeeee" }
            );
            let label = if v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end" fill="{}">{label}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                if major { "#000" } else { "#888" }
            );
        }
        dec += 1.0;
    }
    for p in points {
        let x = px(p.chunks);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#eeeeee"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            BOTTOM + 18.0,
            p.chunks
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#777" font-size="10">{} racks</text>"##,
            BOTTOM + 31.0,
            p.racks
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#000"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">chunks in the cluster (log scale)</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 52.0
    );
    let _ = writeln!(
        s,
        r#"<text x="22" y="{}" text-anchor="middle" transform="rotate(-90 22 {})">recovery makespan, s (log scale)</text>"#,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0
    );
    // Series: the bound first (dashed), then each policy.
    let mut series: Vec<Series> = vec![(
        None,
        "T_LB (lower bound)".into(),
        points
            .iter()
            .map(|p| (px(p.chunks), py(p.t_lb_us as f64 / 1e6)))
            .collect(),
    )];
    for name in PolicyName::ALL {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| {
                p.makespans
                    .iter()
                    .find(|m| m.0 == name)
                    .map(|m| (px(p.chunks), py(m.1 as f64 / 1e6)))
            })
            .collect();
        if !pts.is_empty() {
            series.push((Some(name), name.label().into(), pts));
        }
    }
    for (i, (p, label, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash = if p.is_none() {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            color(*p)
        );
        for &(x, y) in pts {
            marker(&mut s, *p, x, y);
        }
        let ly = TOP + 14.0 + i as f64 * 24.0;
        let lx = RIGHT + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
            lx + 28.0,
            color(*p)
        );
        marker(&mut s, *p, lx + 14.0, ly);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 36.0,
            ly + 4.0,
            esc(label)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}
