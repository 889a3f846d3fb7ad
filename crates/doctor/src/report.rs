//! What a doctor reports: steps and findings, each with a verdict, one line saying what was
//! seen and, for problems, one line saying what to do; and their text rendering.

use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// How a step or finding came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Works as it should.
    Ok,
    /// Worth knowing, but not a fault (e.g. no portmapper: the mount lines carry the ports).
    Note,
    /// A broken link: the exit code becomes 1.
    Problem,
    /// Not tried, because an earlier step failed.
    Skipped,
}

impl Verdict {
    fn tag(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Note => "note",
            Verdict::Problem => "PROBLEM",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One step of a walk or one finding about a path.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// A stable identifier (`tcp_connect`, `mnt`, `allow_other`, ...).
    pub step: &'static str,
    pub verdict: Verdict,
    /// What was seen, in one sentence.
    pub summary: String,
    /// What to do about it (problems, and notes that call for an action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// How long the step took, when it talked to something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
}

impl Step {
    pub fn new(step: &'static str, verdict: Verdict, summary: impl Into<String>) -> Self {
        Self {
            step,
            verdict,
            summary: summary.into(),
            fix: None,
            elapsed_ms: None,
        }
    }

    pub fn ok(step: &'static str, summary: impl Into<String>) -> Self {
        Self::new(step, Verdict::Ok, summary)
    }

    pub fn note(step: &'static str, summary: impl Into<String>) -> Self {
        Self::new(step, Verdict::Note, summary)
    }

    pub fn problem(step: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(step, Verdict::Problem, summary).fix(fix)
    }

    pub fn skipped(step: &'static str, why: impl Into<String>) -> Self {
        Self::new(step, Verdict::Skipped, why)
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub fn took(mut self, d: Duration) -> Self {
        self.elapsed_ms = Some((d.as_secs_f64() * 1e6).round() / 1e3);
        self
    }
}

/// Problems among `steps`.
pub fn count_problems(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| s.verdict == Verdict::Problem)
        .count()
}

/// Render steps as aligned text lines: `  ok       tcp_connect  connected in 0.2 ms`, with the
/// fix on its own indented line.
pub fn render_steps(steps: &[Step]) -> String {
    let width = steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in steps {
        let took = match s.elapsed_ms {
            Some(ms) if ms >= 0.05 => format!(
                " ({})",
                mountshare_units::human_duration(Duration::from_secs_f64(ms / 1e3),)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<width$}  {}{}",
            s.verdict.tag(),
            s.step,
            s.summary,
            took
        );
        if let Some(fix) = &s.fix {
            let _ = writeln!(out, "  {:<8} {:<width$}  fix: {}", "", "", fix);
        }
    }
    out
}

/// The closing line: healthy, or how many problems.
pub fn verdict_line(problems: usize) -> String {
    match problems {
        0 => "verdict: healthy (no problems found)".to_owned(),
        1 => "verdict: 1 problem found".to_owned(),
        n => format!("verdict: {n} problems found"),
    }
}
