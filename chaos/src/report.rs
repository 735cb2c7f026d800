//! What a person reads after a campaign: a one-screen summary of the
//! verdict, and a self-contained SVG timeline of the run (client operations,
//! faults, leaders). No dependencies: the SVG is written by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::check::{Status, Verdict};
use crate::history::{Campaign, Event, Observation, Op, Type, NEMESIS_PROCESS};

/// Detail lines shown under a failed check in the summary.
const FAIL_LINES: usize = 4;

/// VALID/INVALID, one row per check, and the stats.
pub fn summary(v: &Verdict) -> String {
    let count = |s: Status| v.checks.iter().filter(|c| c.status == s).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} checks: {} pass, {} fail, {} skipped)",
        if v.valid { "VALID" } else { "INVALID" },
        v.checks.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skipped)
    );
    let _ = writeln!(out);
    let width = v
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "  {:<width$}  {:<6}  detail", "check", "status");
    for c in &v.checks {
        let status = match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skipped => "SKIP",
        };
        let first = c.details.first().map(String::as_str).unwrap_or("");
        let _ = writeln!(
            out,
            "  {:<width$}  {status:<6}  {}",
            c.name,
            clip(first, 100)
        );
        if c.status == Status::Fail {
            for d in c.details.iter().skip(1).take(FAIL_LINES) {
                let _ = writeln!(out, "  {:<width$}          {}", "", clip(d, 100));
            }
            if c.details.len() > FAIL_LINES + 1 {
                let _ = writeln!(
                    out,
                    "  {:<width$}          ({} more lines in verdict.json)",
                    "",
                    c.details.len() - FAIL_LINES - 1
                );
            }
        }
    }
    let _ = writeln!(out);
    let s = &v.stats;
    for (f, by_type) in &s.operations {
        let counts: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let _ = writeln!(out, "  {f:<14} {}", counts.join(", "));
    }
    let _ = writeln!(
        out,
        "  keys checked {}, faults injected {}, {} events over {:.1} s (campaign {:.1} s), checked in {} ms",
        s.keys_checked,
        s.faults_injected,
        s.events,
        s.history_ms as f64 / 1e3,
        s.campaign_ms as f64 / 1e3,
        s.check_ms
    );
    if !v.linear.anomalies.is_empty() {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for a in &v.linear.anomalies {
            *kinds.entry(a.kind.to_string()).or_default() += 1;
        }
        let k: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let _ = writeln!(out, "  anomalies: {}", k.join(", "));
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 3).collect();
    t.push_str("...");
    t
}

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Whether a nemesis action repairs a fault rather than injecting one:
/// `heal-<fault>` or `heal-all`, by the history's convention.
pub fn is_heal(action: &str) -> bool {
    // The campaign's convention (crate::history, Op::Nemesis): a heal's
    // action is `heal-<fault>` (or `heal-all`).
    action == "heal" || action.starts_with("heal-")
}

const W: f64 = 1200.0;
const LEFT: f64 = 130.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 16.0;
const GAP: f64 = 4.0;
const OK: &str = "#43a047";
const FAIL: &str = "#e53935";
const INFO: &str = "#fb8c00";
const FAULT: &str = "#ce93d8";
const LEADERS: [&str; 6] = [
    "#90caf9", "#a5d6a7", "#ffe082", "#f48fb1", "#b39ddb", "#80cbc4",
];

struct Bar {
    start_ns: u64,
    end_ns: u64,
    color: &'static str,
    label: String,
    title: String,
}

/// A timeline of the run: x = time; a leader band per term (from the
/// observations), the nemesis' fault intervals, and one lane per client
/// with each operation as a bar from invoke to completion coloured by its
/// outcome (green ok, red fail, orange info or never completed).
pub fn timeline_svg(campaign: &Campaign, events: &[Event], observations: &[Observation]) -> String {
    let end_ns = events
        .iter()
        .map(|e| e.time_ns)
        .chain(observations.iter().map(|o| o.time_ns))
        .chain([campaign.duration_ms.saturating_mul(1_000_000)])
        .max()
        .unwrap_or(0)
        .max(1);
    let pw = W - LEFT - RIGHT;
    let x = |t: u64| LEFT + (t.min(end_ns) as f64 / end_ns as f64) * pw;

    let leader_bars = leader_bands(observations, end_ns);
    let fault_lanes = fault_lanes(events, end_ns);
    let clients = client_bars(events, end_ns);

    let mut body = String::new();
    let mut y = 44.0;
    let lane = |body: &mut String, y: f64, name: &str, bars: &[Bar]| {
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="lane">{}</text>"#,
            LEFT - 6.0,
            y + LANE - 4.0,
            xml_escape(name)
        );
        let _ = writeln!(
            body,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            y + LANE / 2.0,
            W - RIGHT,
            y + LANE / 2.0
        );
        for b in bars {
            let (x1, x2) = (x(b.start_ns), x(b.end_ns));
            let w = (x2 - x1).max(1.5);
            let _ = write!(
                body,
                r#"<g><title>{}</title><rect x="{x1:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}" rx="2"/>"#,
                xml_escape(&b.title),
                y + 1.0,
                LANE - 2.0,
                b.color
            );
            // A label only where it fits (roughly 6 px a character).
            if !b.label.is_empty() && w > 6.0 * b.label.len() as f64 {
                let _ = write!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" class="bar">{}</text>"#,
                    x1 + 3.0,
                    y + LANE - 4.0,
                    xml_escape(&b.label)
                );
            }
            let _ = writeln!(body, "</g>");
        }
    };
    lane(&mut body, y, "leader (term)", &leader_bars);
    y += LANE + GAP;
    for (i, bars) in fault_lanes.iter().enumerate() {
        let name = if i == 0 { "nemesis" } else { "" };
        lane(&mut body, y, name, bars);
        y += LANE + GAP;
    }
    y += GAP;
    for (process, bars) in &clients {
        lane(&mut body, y, &format!("client {process}"), bars);
        y += LANE + GAP;
    }

    // The axis, in seconds, at a step giving at most ~12 ticks.
    let axis_y = y + 6.0;
    let span_s = end_ns as f64 / 1e9;
    let step = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|s| span_s / s <= 12.0)
    .unwrap_or(7200.0);
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#333"/>"##,
        W - RIGHT
    );
    let mut k = 0u64;
    loop {
        let t_s = k as f64 * step;
        if t_s > span_s + 1e-9 {
            break;
        }
        let tx = LEFT + (t_s / span_s) * pw;
        let label = if step < 1.0 {
            format!("{t_s:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            format!("{t_s:.0}")
        };
        let _ = writeln!(
            body,
            r##"<line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#333"/><line x1="{tx:.1}" y1="40" x2="{tx:.1}" y2="{axis_y:.1}" stroke="#f4f4f4"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="axis">{label}</text>"##,
            axis_y + 4.0,
            axis_y + 16.0
        );
        k += 1;
    }
    let _ = writeln!(
        body,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">time (s)</text>"#,
        LEFT + pw / 2.0,
        axis_y + 32.0
    );
    let height = axis_y + 44.0;

    let mut legend = String::new();
    let mut lx = LEFT;
    for (color, name) in [
        (OK, "ok"),
        (FAIL, "fail"),
        (INFO, "info / unknown"),
        (FAULT, "fault"),
        (LEADERS[0], "leader of a term"),
    ] {
        let _ = write!(
            legend,
            r#"<rect x="{lx:.1}" y="22" width="12" height="12" fill="{color}"/><text x="{:.1}" y="32" class="legend">{name}</text>"#,
            lx + 16.0
        );
        lx += 30.0 + 7.0 * name.len() as f64;
    }
    let title = format!(
        "cairn-chaos {} seed {}: {} nodes, {} chunks, nemeses [{}]{}",
        campaign.mode,
        campaign.seed,
        campaign.nodes,
        campaign.chunks,
        campaign.nemeses.join(", "),
        campaign
            .bug
            .as_deref()
            .map(|b| format!(", bug {b}"))
            .unwrap_or_default()
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0}" viewBox="0 0 {W} {height:.0}" font-family="sans-serif">
<style>.lane{{font-size:11px;fill:#333}} .bar{{font-size:10px;fill:#111}} .axis{{font-size:10px;fill:#333}} .legend{{font-size:11px;fill:#333}} .title{{font-size:13px;font-weight:bold}}</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="15" class="title">{}</text>
{legend}
{body}</svg>
"##,
        xml_escape(&title)
    )
}

/// For each term with a known leader, from its first sighting to the first
/// sighting of a later term.
fn leader_bands(observations: &[Observation], end_ns: u64) -> Vec<Bar> {
    let mut first: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut term_seen: BTreeMap<u64, u64> = BTreeMap::new();
    for o in observations {
        let t = term_seen.entry(o.term).or_insert(o.time_ns);
        *t = (*t).min(o.time_ns);
        if o.leader_id != 0 {
            let f = first.entry(o.term).or_insert((o.time_ns, o.leader_id));
            if o.time_ns < f.0 {
                *f = (o.time_ns, o.leader_id);
            }
        }
    }
    first
        .iter()
        .map(|(&term, &(start, leader))| {
            let end = term_seen
                .range((std::ops::Bound::Excluded(term), std::ops::Bound::Unbounded))
                .map(|(_, t)| *t)
                .filter(|t| *t >= start)
                .min()
                .unwrap_or(end_ns);
            Bar {
                start_ns: start,
                end_ns: end,
                color: LEADERS[(leader as usize) % LEADERS.len()],
                label: format!("t{term} n{leader}"),
                title: format!(
                    "term {term}: leader {leader}, {:.3}s..{:.3}s",
                    start as f64 / 1e9,
                    end as f64 / 1e9
                ),
            }
        })
        .collect()
}

/// Fault intervals, stacked into as many lanes as overlap: from a fault's
/// invoke to the first heal whose targets meet its own (a heal or a fault
/// without targets concerns every target), or to the end.
fn fault_lanes(events: &[Event], end_ns: u64) -> Vec<Vec<Bar>> {
    let mut open: Vec<(u64, String, Vec<u64>)> = Vec::new();
    let mut bars: Vec<Bar> = Vec::new();
    let close = |start: u64, end: u64, action: &str, targets: &[u64], how: &str| Bar {
        start_ns: start,
        end_ns: end,
        color: FAULT,
        label: action.to_string(),
        title: format!(
            "{action} {targets:?}: {:.3}s..{:.3}s{how}",
            start as f64 / 1e9,
            end as f64 / 1e9
        ),
    };
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| e.process == NEMESIS_PROCESS && e.kind == Type::Invoke)
        .collect();
    sorted.sort_by_key(|e| e.index);
    for e in sorted {
        let Op::Nemesis {
            action, targets, ..
        } = &e.op
        else {
            continue;
        };
        if is_heal(action) {
            let meets = |t: &[u64]| {
                targets.is_empty() || t.is_empty() || t.iter().any(|x| targets.contains(x))
            };
            let (healed, still): (Vec<_>, Vec<_>) = open.drain(..).partition(|(_, _, t)| meets(t));
            open = still;
            for (start, a, t) in healed {
                bars.push(close(
                    start,
                    e.time_ns,
                    &a,
                    &t,
                    &format!(" (healed by {action})"),
                ));
            }
        } else {
            open.push((e.time_ns, action.clone(), targets.clone()));
        }
    }
    for (start, a, t) in open {
        bars.push(close(start, end_ns, &a, &t, " (never healed)"));
    }
    bars.sort_by_key(|b| b.start_ns);
    // Greedy interval colouring: each bar into the first lane it fits.
    let mut lanes: Vec<Vec<Bar>> = vec![Vec::new()];
    for b in bars {
        let i = lanes
            .iter()
            .position(|l| l.last().is_none_or(|p| p.end_ns <= b.start_ns));
        match i {
            Some(i) => lanes[i].push(b),
            None => lanes.push(vec![b]),
        }
    }
    lanes
}

fn describe(op: &Op) -> String {
    match op {
        Op::Read { pid, value } => match value {
            Some(v) => format!("read {pid} -> gen {} owner {}", v.generation, v.owner),
            None => format!("read {pid}"),
        },
        Op::Cas {
            pid,
            expected_generation,
            owner,
            generation,
        } => match generation {
            Some(g) => format!("cas {pid} expect {expected_generation} owner {owner} -> gen {g}"),
            None => format!("cas {pid} expect {expected_generation} owner {owner}"),
        },
        Op::CreateVolume { name, extents, .. } => {
            format!("create volume {name} ({extents} extents)")
        }
        Op::Nemesis { action, .. } => action.clone(),
    }
}

/// Each client's operations, paired invoke -> next completion of the process.
fn client_bars(events: &[Event], end_ns: u64) -> BTreeMap<u64, Vec<Bar>> {
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| e.process != NEMESIS_PROCESS)
        .collect();
    sorted.sort_by_key(|e| e.index);
    let mut pending: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut out: BTreeMap<u64, Vec<Bar>> = BTreeMap::new();
    let bar = |inv: &Event, done: Option<&Event>| {
        let (color, end, outcome) = match done {
            Some(d) => (
                match d.kind {
                    Type::Ok => OK,
                    Type::Fail => FAIL,
                    _ => INFO,
                },
                d.time_ns,
                format!(
                    "{:?}: {}{}",
                    d.kind,
                    describe(&d.op),
                    d.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            ),
            None => (INFO, end_ns, "never completed".to_string()),
        };
        Bar {
            start_ns: inv.time_ns,
            end_ns: end.max(inv.time_ns),
            color,
            label: String::new(),
            title: format!(
                "#{} p{} {} at {:.3}s, {:.1} ms: {outcome}",
                inv.index,
                inv.process,
                describe(&inv.op),
                inv.time_ns as f64 / 1e9,
                end.saturating_sub(inv.time_ns) as f64 / 1e6
            ),
        }
    };
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    for e in sorted {
        seen.insert(e.process);
        if e.kind == Type::Invoke {
            if let Some(prev) = pending.insert(e.process, e) {
                out.entry(prev.process).or_default().push(bar(prev, None));
            }
        } else if let Some(inv) = pending.remove(&e.process) {
            out.entry(e.process).or_default().push(bar(inv, Some(e)));
        }
    }
    for inv in pending.into_values() {
        out.entry(inv.process).or_default().push(bar(inv, None));
    }
    for p in seen {
        out.entry(p).or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckResult, LinearSummary, Stats};
    use crate::history::ExtentValue;

    fn ev(index: u64, t_ms: u64, process: u64, kind: Type, op: Op) -> Event {
        Event {
            index,
            time_ns: t_ms * 1_000_000,
            process,
            kind,
            op,
            error: None,
        }
    }

    fn nem(action: &str, targets: Vec<u64>) -> Op {
        Op::Nemesis {
            action: action.into(),
            targets,
            detail: "<&>".into(),
        }
    }

    #[test]
    fn the_summary_has_a_headline_a_row_per_check_and_the_stats() {
        let v = Verdict {
            valid: false,
            checks: vec![
                CheckResult::pass("linearizable", vec!["3 keys".into()]),
                CheckResult::fail(
                    "replicas_restored",
                    vec!["1 violation".into(), "extent 4".into()],
                ),
                CheckResult::skipped("digests_agree", "file final.json absent".into()),
            ],
            stats: Stats {
                keys_checked: 3,
                faults_injected: 2,
                ..Stats::default()
            },
            linear: LinearSummary::default(),
        };
        let s = summary(&v);
        assert!(
            s.starts_with("INVALID (3 checks: 1 pass, 1 fail, 1 skipped)"),
            "{s}"
        );
        assert!(s.contains("linearizable       PASS    3 keys"), "{s}");
        assert!(s.contains("replicas_restored  FAIL    1 violation"), "{s}");
        assert!(s.contains("extent 4"), "{s}");
        assert!(s.contains("SKIP    file final.json absent"), "{s}");
        assert!(s.contains("keys checked 3, faults injected 2"), "{s}");
        assert!(s.lines().count() < 25);
    }

    #[test]
    fn the_timeline_draws_lanes_faults_leaders_and_escapes_text() {
        let campaign = Campaign {
            mode: "run".into(),
            nemeses: vec!["partition<&>".into()],
            duration_ms: 4_000,
            ..Campaign::default()
        };
        let read = |v: Option<(u64, u32)>| Op::Read {
            pid: 1,
            value: v.map(|(generation, owner)| ExtentValue { generation, owner }),
        };
        let events = vec![
            ev(0, 100, 1, Type::Invoke, read(None)),
            ev(
                1,
                200,
                NEMESIS_PROCESS,
                Type::Invoke,
                nem("partition", vec![1]),
            ),
            ev(2, 300, 1, Type::Ok, read(Some((1, 2)))),
            ev(3, 400, 2, Type::Invoke, read(None)),
            ev(4, 500, 2, Type::Fail, read(None)),
            ev(5, 600, 3, Type::Invoke, read(None)),
            ev(6, 2_500, NEMESIS_PROCESS, Type::Invoke, nem("heal", vec![])),
            ev(
                7,
                2_600,
                NEMESIS_PROCESS,
                Type::Invoke,
                nem("kill", vec![2]),
            ),
        ];
        let obs = vec![
            Observation {
                time_ns: 0,
                node_id: 1,
                term: 1,
                leader_id: 1,
            },
            Observation {
                time_ns: 1_000_000_000,
                node_id: 2,
                term: 2,
                leader_id: 3,
            },
        ];
        let svg = timeline_svg(&campaign, &events, &obs);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("partition&lt;&amp;&gt;"),
            "the title is escaped"
        );
        assert!(!svg.contains("<&>"));
        for lane in [
            "client 1",
            "client 2",
            "client 3",
            "nemesis",
            "leader (term)",
        ] {
            assert!(svg.contains(lane), "{lane}");
        }
        assert!(svg.contains(OK) && svg.contains(FAIL) && svg.contains(INFO));
        assert!(svg.contains("healed by heal"));
        assert!(svg.contains("kill [2]") && svg.contains("never healed"));
        assert!(svg.contains("t1 n1") && svg.contains("t2 n3"));
        assert!(
            svg.contains(">time (s)<") && svg.contains(">4<"),
            "axis in seconds"
        );
        // every element opened is closed: as many <g> as </g>
        assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count());
    }

    #[test]
    fn heal_actions_are_told_by_their_words() {
        for a in ["heal", "heal-partition", "heal-all", "heal-leader-churn"] {
            assert!(is_heal(a), "{a}");
        }
        for a in [
            "partition",
            "kill",
            "chunk",
            "pause",
            "clock",
            "healthy-check",
        ] {
            assert!(!is_heal(a), "{a}");
        }
    }
}
