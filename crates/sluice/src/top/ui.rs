//! Drawing `sluice top`: a header naming the services and whether they
//! answer, then one panel per figure — its value in the title, its recent
//! history as a sparkline. A figure no service reports shows "–".

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};

use super::stats::{Series, Stats};

/// Whether each scraped address answered last time.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub role: &'static str,
    pub url: String,
    /// `None` when it answered; the reason otherwise.
    pub error: Option<String>,
}

const ABSENT: &str = "–";

/// `12.3`, or "–" when absent.
fn number(value: Option<f64>, decimals: usize) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| ABSENT.to_owned(), |v| format!("{v:.decimals$}"))
}

/// A duration in seconds as ms or s.
fn duration(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        None => ABSENT.to_owned(),
        Some(v) if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Some(v) => format!("{v:.2} s"),
    }
}

pub fn draw(frame: &mut Frame, stats: &Stats, targets: &[TargetState], every: f64) {
    let [header, grid] = Layout::vertical([
        Constraint::Length(targets.len() as u16 + 2),
        Constraint::Min(0),
    ])
    .areas(frame.area());
    draw_header(frame, header, targets, every);
    let rows = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(grid);
    let cells: Vec<Rect> = rows
        .iter()
        .flat_map(|row| {
            Layout::horizontal([Constraint::Ratio(1, 2); 2])
                .split(*row)
                .to_vec()
        })
        .collect();
    let t = &stats.latest;
    let panels = [
        (
            format!("events/s accepted {}", number(stats.events_per_sec.now, 1)),
            &stats.events_per_sec,
            Color::Green,
        ),
        (
            format!("rows/s written {}", number(stats.rows_per_sec.now, 1)),
            &stats.rows_per_sec,
            Color::Green,
        ),
        (
            format!(
                "queue visible {} · in flight {} · dead letter {}",
                number(t.depth.visible, 0),
                number(t.depth.in_flight, 0),
                number(t.depth.dead_letter, 0)
            ),
            &stats.visible,
            Color::Cyan,
        ),
        (
            format!(
                "lag p50 {} · p99 {}",
                duration(stats.lag_p50),
                duration(stats.lag_p99.now)
            ),
            &stats.lag_p99,
            Color::Cyan,
        ),
        (
            format!(
                "errors/s {} (total {})",
                number(stats.errors_per_sec.now, 1),
                number(
                    match (t.ingest_errors, t.writer_errors) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                    },
                    0
                )
            ),
            &stats.errors_per_sec,
            Color::Red,
        ),
        (
            format!(
                "rejected/s {} (total {})",
                number(stats.rejected_per_sec.now, 1),
                number(t.rejected, 0)
            ),
            &stats.rejected_per_sec,
            Color::Yellow,
        ),
    ];
    for ((title, series, color), area) in panels.into_iter().zip(cells) {
        draw_panel(frame, area, title, series, color);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, targets: &[TargetState], every: f64) {
    let lines: Vec<Line> = targets
        .iter()
        .map(|t| {
            let state = match &t.error {
                None => Span::styled("up", Style::default().fg(Color::Green)),
                Some(e) => Span::styled(format!("down: {e}"), Style::default().fg(Color::Red)),
            };
            Line::from(vec![Span::raw(format!("{:<7}{}  ", t.role, t.url)), state])
        })
        .collect();
    let title = format!(" sluice top · every {every:.1} s · q quits ");
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title.bold())),
        area,
    );
}

fn draw_panel(frame: &mut Frame, area: Rect, title: String, series: &Series, color: Color) {
    let block = Block::bordered().title(format!(" {title} "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // The newest values, as many as fit.
    let width = inner.width as usize;
    let skip = series.history.len().saturating_sub(width);
    let data: Vec<u64> = series.history.iter().skip(skip).copied().collect();
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(Style::default().fg(color)),
        inner,
    );
}
