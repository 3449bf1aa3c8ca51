//! Figures over rounds: medians with their spread, ratios, and how they are printed next to
//! their goals.
use std::fmt;

/// The values of one measure over the rounds.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// Round by round `self / other` (rates: higher is better for `self`).
    pub fn ratio_to(&self, other: &Samples) -> Samples {
        Samples(self.0.iter().zip(&other.0).map(|(a, b)| a / b).collect())
    }
}

/// Which way a goal points.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl Goal {
    fn met(self, v: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(g) => Some(v >= g),
            Goal::AtMost(g) => Some(v <= g),
            Goal::None => None,
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::AtLeast(g) => write!(f, "goal >= {g}"),
            Goal::AtMost(g) => write!(f, "goal <= {g}"),
            Goal::None => Ok(()),
        }
    }
}

/// One line: a label, the median with the spread over the rounds, the goal and whether it is
/// met.
pub fn line(label: &str, s: &Samples, unit: &str, decimals: usize, goal: Goal) {
    let verdict = match goal.met(s.median()) {
        Some(true) => "  met",
        Some(false) => "  NOT MET",
        None => "",
    };
    println!(
        "  {label:<46} {:>10.decimals$}{unit} ({:.decimals$}..{:.decimals$})   {goal}{verdict}",
        s.median(),
        s.min(),
        s.max(),
    );
}
