//! The day's report: printed step by step as it happens, then the figures and a one-line
//! verdict. Every check is a line that says `ok` or `FAIL`; one failed check fails the day.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One step of the day, with how long it took.
#[derive(Debug, Clone)]
pub struct StepTime {
    pub title: String,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Report {
    /// Where lines go as they are made (stdout for `make classroom`, stderr in tests).
    echo: fn(&str),
    text: String,
    started: Instant,
    step_started: Option<(String, Instant)>,
    pub steps: Vec<StepTime>,
    pub checks: usize,
    pub failures: Vec<String>,
    /// Named figures printed at the end, in the order they were added.
    figures: Vec<(String, String)>,
}

impl Report {
    pub fn new(echo: fn(&str)) -> Self {
        Self {
            echo,
            text: String::new(),
            started: Instant::now(),
            step_started: None,
            steps: Vec::new(),
            checks: 0,
            failures: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Everything printed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        (self.echo)(line);
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Starts step `title`, ending the previous one.
    pub fn step(&mut self, title: &str) {
        self.end_step();
        self.line("");
        self.line(format!("== {title}"));
        self.step_started = Some((title.to_owned(), Instant::now()));
    }

    /// Ends the current step and prints its time.
    pub fn end_step(&mut self) {
        if let Some((title, t0)) = self.step_started.take() {
            let elapsed = t0.elapsed();
            self.line(format!("   ({:.1} s)", elapsed.as_secs_f64()));
            self.steps.push(StepTime { title, elapsed });
        }
    }

    /// A fact that was observed, not checked.
    pub fn info(&mut self, text: impl AsRef<str>) {
        self.line(format!("   {}", text.as_ref()));
    }

    /// A check: `ok` or `FAIL`. Returns `ok`.
    pub fn check(&mut self, ok: bool, text: impl AsRef<str>) -> bool {
        self.checks += 1;
        let text = text.as_ref();
        if ok {
            self.line(format!("   ok    {text}"));
        } else {
            self.line(format!("   FAIL  {text}"));
            self.failures.push(text.to_owned());
        }
        ok
    }

    /// A step that could not go on: counted as a failed check.
    pub fn fail(&mut self, text: impl AsRef<str>) {
        self.check(false, text);
    }

    pub fn figure(&mut self, name: &str, value: impl Into<String>) {
        self.figures.push((name.to_owned(), value.into()));
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.checks > 0
    }

    /// Prints the time per step, the figures and the verdict line (the last line).
    pub fn finish(&mut self, summary: &str) {
        self.end_step();
        self.line("");
        self.line("== Figures");
        let width = self.steps.iter().map(|s| s.title.len()).max().unwrap_or(0);
        let mut table = String::new();
        for s in &self.steps {
            let _ = writeln!(table, "   {:<width$}  {:>7.1} s", s.title, s.elapsed.as_secs_f64());
        }
        let total = self.started.elapsed();
        let _ = writeln!(table, "   {:<width$}  {:>7.1} s", "whole day", total.as_secs_f64());
        for l in table.lines() {
            self.line(l);
        }
        let fig_width = self.figures.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let figures: Vec<String> =
            self.figures.iter().map(|(n, v)| format!("   {n:<fig_width$}  {v}")).collect();
        for l in figures {
            self.line(l);
        }
        self.line("");
        let verdict = if self.passed() {
            format!("PASS: {summary}: all {} checks held in {:.1} s", self.checks, total.as_secs_f64())
        } else {
            format!(
                "FAIL: {summary}: {} of {} checks failed ({}) in {:.1} s",
                self.failures.len(),
                self.checks,
                self.failures.first().map(String::as_str).unwrap_or("no check ran"),
                total.as_secs_f64()
            )
        };
        self.line(verdict);
    }
}

/// `bytes` as MB with one decimal (10^6 bytes, as network figures are usually given).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_fails_the_day() {
        let mut r = Report::new(|_| {});
        r.step("a");
        assert!(r.check(true, "fine"));
        assert!(r.passed());
        assert!(!r.check(false, "broken"));
        r.finish("test");
        assert!(!r.passed());
        assert!(
            r.text()
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("FAIL: test: 1 of 2 checks failed (broken)"))
        );
    }
}
