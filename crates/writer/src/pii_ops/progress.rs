//! Progress of a long sweep on stderr: a bar on a terminal, plain lines
//! otherwise (logs, CI), so a run of `rekey` over millions of rows shows it
//! is moving either way. Positions are pages (PostgreSQL) or rowids
//! (SQLite), the unit the sweep advances by.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is written at most.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    command: &'static str,
    mode: Mode,
    table: &'static str,
    done: u64,
    total: u64,
    last_line: Instant,
}

enum Mode {
    Silent,
    Bar(Option<ProgressBar>),
    Lines,
}

impl Progress {
    /// Shown for `command` when `shown`; a bar when stderr is a terminal.
    pub fn new(command: &'static str, shown: bool) -> Self {
        let mode = match (shown, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Silent,
            (true, true) => Mode::Bar(None),
            (true, false) => Mode::Lines,
        };
        Self {
            command,
            mode,
            table: "",
            done: 0,
            total: 0,
            last_line: Instant::now(),
        }
    }

    pub fn start_table(&mut self, table: &'static str, total: u64) {
        self.table = table;
        self.done = 0;
        self.total = total;
        self.last_line = Instant::now();
        match &mut self.mode {
            Mode::Bar(bar) => {
                let b = ProgressBar::new(total);
                let style = ProgressStyle::with_template(
                    "{msg:>18} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                b.set_style(style);
                b.set_message(table);
                *bar = Some(b);
            }
            Mode::Lines => eprintln!("{}: {table}: started", self.command),
            Mode::Silent => {}
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.mode {
            Mode::Bar(Some(bar)) => bar.inc(n),
            Mode::Lines if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "{}: {}: {}%",
                    self.command,
                    self.table,
                    self.done * 100 / self.total.max(1)
                );
            }
            _ => {}
        }
    }

    /// The table grew while it was swept (rows behind the sweep).
    pub fn extend(&mut self, n: u64) {
        self.total += n;
        if let Mode::Bar(Some(bar)) = &self.mode {
            bar.inc_length(n);
        }
    }

    pub fn finish_table(&mut self) {
        match &mut self.mode {
            Mode::Bar(bar) => {
                if let Some(bar) = bar.take() {
                    bar.finish();
                }
            }
            Mode::Lines => eprintln!("{}: {}: done", self.command, self.table),
            Mode::Silent => {}
        }
    }
}
