//! The capacity curves as SVG: p50 and p99 from the scheduled send against
//! the offered rate, one line per system and node count, from the first
//! run of each capacity search, the one that climbs every step from the
//! bottom (docs/benchmarks.md shows them).

use crate::report::{synchronous_commit, Res};
use plotters::prelude::*;
use serde_json::Value;

/// One series: its label and (rate, p50, p99) points.
struct Series {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

fn series(rows: &[Value], workload: &str) -> Vec<Series> {
    rows.iter()
        .filter(|r| r["scenario"] == "capacity" && r["params"]["workload"] == workload)
        .map(|r| Series {
            label: format!(
                "{} {} node{}",
                r["target"].as_str().unwrap_or(""),
                r["nodes"],
                if r["nodes"] == 1 { "" } else { "s" }
            ),
            points: r["figures"]["steps"]
                .as_array()
                .map(|steps| {
                    // A step that lost frames has no p99: it is left out
                    // (the search stopped there).
                    steps
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s["rate"].as_f64()?,
                                s["p50_ms"].as_f64()?.max(0.1),
                                s["p99_ms"].as_f64()?.max(0.1),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Draws `capacity-<workload>.svg` in `dir` for each workload with
/// capacity rows; the files written. Rows measured with PostgreSQL's
/// `synchronous_commit` other than `off` go to
/// `capacity-<workload>-synchronous-commit-<value>.svg`: their figures do
/// not belong on the same chart.
pub fn draw(rows: &[Value], dir: &str) -> Res<Vec<String>> {
    let mut settings: Vec<&str> = rows.iter().map(synchronous_commit).collect();
    settings.sort_unstable();
    settings.dedup();
    let mut written = Vec::new();
    for setting in settings {
        let same: Vec<Value> = rows
            .iter()
            .filter(|r| synchronous_commit(r) == setting)
            .cloned()
            .collect();
        for (workload, bound) in [("chat", 50.0), ("fanout", 100.0)] {
            let all = series(&same, workload);
            if all.is_empty() {
                continue;
            }
            let path = if setting == "off" {
                format!("{dir}/capacity-{workload}.svg")
            } else {
                format!("{dir}/capacity-{workload}-synchronous-commit-{setting}.svg")
            };
            draw_one(&path, workload, bound, &all).map_err(|e| format!("{path}: {e}"))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Parley in warm colours, the peer in cold ones; 2 nodes lighter.
fn color_of(label: &str, i: usize) -> RGBAColor {
    let rgb = match (label.starts_with("parley"), label.contains(" 1 node")) {
        (true, true) => RGBColor(200, 30, 30),
        (true, false) => RGBColor(235, 130, 0),
        (false, true) => RGBColor(30, 80, 200),
        (false, false) => RGBColor(0, 150, 150),
    };
    if i < 4 {
        rgb.to_rgba()
    } else {
        Palette99::pick(i).to_rgba()
    }
}

fn draw_one(
    path: &str,
    workload: &str,
    bound: f64,
    all: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let xmax = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        * 1.05;
    let ymax = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.2))
        .fold(bound * 2.0, f64::max)
        * 1.5;
    let ymin = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(0.1, 10.0)
        / 1.5;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{workload}: latency from the scheduled send against offered rate (p99 solid, p50 thin; bound {bound} ms)"
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered rate, messages per second")
        .y_desc("send to deliver, ms (log scale)")
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.0, bound), (xmax, bound)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    for (i, s) in all.iter().enumerate() {
        let color = color_of(&s.label, i);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.2)),
                color.stroke_width(3),
            ))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart.draw_series(LineSeries::new(
            s.points.iter().map(|p| (p.0, p.1)),
            color.stroke_width(1),
        ))?;
        chart.draw_series(
            s.points
                .iter()
                .map(|p| Circle::new((p.0, p.2), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The newest `capacity` line of each workload, system, node count and
/// `synchronous_commit` in `dir/results.jsonl`.
pub fn latest(dir: &str) -> Res<Vec<Value>> {
    let text =
        std::fs::read_to_string(format!("{dir}/results.jsonl")).map_err(|e| e.to_string())?;
    let mut newest: Vec<Value> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["scenario"] != "capacity" {
            continue;
        }
        let same = |o: &Value| {
            o["target"] == v["target"]
                && o["nodes"] == v["nodes"]
                && o["params"]["workload"] == v["params"]["workload"]
                && synchronous_commit(o) == synchronous_commit(&v)
        };
        newest.retain(|o| !same(o));
        newest.push(v);
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn curves_are_drawn_for_each_workload_with_rows() {
        let dir = std::env::temp_dir().join(format!("parley-curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let row = |target: &str, nodes: u64| {
            json!({"scenario": "capacity", "target": target, "nodes": nodes,
                   "params": {"workload": "chat"},
                   "figures": {"steps": [{"rate": 1000, "p50_ms": 1.2, "p99_ms": 9.0},
                                         {"rate": 1500, "p50_ms": 2.0, "p99_ms": 70.0}]}})
        };
        let rows = [
            row("parley", 1),
            row("peer", 1),
            json!({"scenario": "idle"}),
        ];
        let written = super::draw(&rows, dir.to_str().expect("utf-8")).expect("draw");
        assert_eq!(written.len(), 1, "chat only");
        let svg = std::fs::read_to_string(&written[0]).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("parley 1 node") && svg.contains("peer 1 node")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn figures_of_another_synchronous_commit_get_their_own_chart() {
        let dir = std::env::temp_dir().join(format!("parley-curves-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let row = |target: &str, sync: Option<&str>| {
            let mut r = json!({"scenario": "capacity", "target": target, "nodes": 1,
                   "params": {"workload": "chat"},
                   "figures": {"steps": [{"rate": 1000, "p50_ms": 1.2, "p99_ms": 9.0}]}});
            if let Some(s) = sync {
                r["database"] = json!({"synchronous_commit": s});
            }
            r
        };
        // A line without the field is from before it was recorded: `off`.
        let rows = [row("parley", None), row("peer", Some("on"))];
        let written = super::draw(&rows, dir.to_str().expect("utf-8")).expect("draw");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| {
                std::path::Path::new(p)
                    .file_name()?
                    .to_str()
                    .map(String::from)
            })
            .collect();
        assert_eq!(
            names,
            [
                "capacity-chat.svg",
                "capacity-chat-synchronous-commit-on.svg"
            ]
        );
        let off = std::fs::read_to_string(&written[0]).expect("svg");
        let on = std::fs::read_to_string(&written[1]).expect("svg");
        assert!(off.contains("parley 1 node") && !off.contains("peer 1 node"));
        assert!(on.contains("peer 1 node") && !on.contains("parley 1 node"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
