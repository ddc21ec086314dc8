//! Draws store progress on stderr: label, bytes done of total, bytes/s and ETA. On a terminal
//! it redraws one line in place; otherwise (CI logs, pipes) it prints a line every few seconds
//! so logs stay short.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use moat_store::Progress;

pub struct TermProgress {
    tty: bool,
    quiet: bool,
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
}

impl TermProgress {
    pub fn new(quiet: bool) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            quiet,
            label: String::new(),
            total: None,
            done: 0,
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn line(&self) -> String {
        self.line_after(self.started.elapsed())
    }

    /// The progress line when `elapsed` has passed since the transfer began.
    fn line_after(&self, elapsed: Duration) -> String {
        let elapsed = elapsed.as_secs_f64().max(1e-3);
        let rate = self.done as f64 / elapsed;
        let mut line = format!("{}  {}", self.label, human_bytes(self.done));
        if let Some(total) = self.total {
            let percent = if total == 0 {
                100.0
            } else {
                self.done as f64 * 100.0 / total as f64
            };
            line.push_str(&format!(" / {} ({percent:.0}%)", human_bytes(total)));
        }
        line.push_str(&format!("  {}/s", human_bytes(rate as u64)));
        if let Some(total) = self.total {
            if rate > 0.0 && total > self.done {
                let eta = (total - self.done) as f64 / rate;
                line.push_str(&format!("  ETA {}", human_duration(eta)));
            }
        }
        line
    }

    fn draw(&mut self, force: bool) {
        if self.quiet {
            return;
        }
        let interval = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let due = self.last_draw.is_none_or(|at| at.elapsed() >= interval);
        if !(force || due) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[2K{}", self.line());
        } else {
            let _ = writeln!(stderr, "{}", self.line());
        }
        let _ = stderr.flush();
    }
}

impl Progress for TermProgress {
    fn begin(&mut self, label: &str, total: Option<u64>) {
        self.label = label.to_string();
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.last_draw = None;
        self.draw(true);
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.draw(false);
    }

    fn end(&mut self) {
        self.draw(true);
        if self.tty && !self.quiet {
            eprintln!();
        }
    }

    fn note(&mut self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    fn warn(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98_362_432), "93.8 MiB");
        assert_eq!(human_duration(4.4), "4s");
        assert_eq!(human_duration(125.0), "2m05s");
    }

    #[test]
    fn line_shows_rate_and_eta() {
        let mut progress = TermProgress::new(true);
        progress.begin("downloading m.gguf", Some(1000));
        progress.done = 500;
        let line = progress.line_after(Duration::from_secs(2));
        assert!(line.contains("500 B / 1000 B (50%)"), "{line}");
        assert!(line.contains("250 B/s"), "{line}");
        assert!(line.contains("ETA 2s"), "{line}");
    }
}
