//! The outcome of one trial: the explicit status every tuning-log row carries.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What happened to one candidate. Only `Ok` carries a time and only `Ok` can be a winner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    /// Built, ran, matched the reference: the timing is valid.
    Ok,
    /// Lowering or code generation failed.
    BuildError,
    /// The kernel crashed or the runner failed while running it.
    RunError,
    /// The kernel ran but its output differs from the reference beyond the tolerance.
    WrongResult,
    /// The kernel did not finish within the per-candidate timeout.
    Timeout,
}

impl TrialStatus {
    pub const ALL: [TrialStatus; 5] = [
        TrialStatus::Ok,
        TrialStatus::BuildError,
        TrialStatus::RunError,
        TrialStatus::WrongResult,
        TrialStatus::Timeout,
    ];

    /// The stable spelling stored in the tuning log and printed in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Ok => "ok",
            TrialStatus::BuildError => "build_error",
            TrialStatus::RunError => "run_error",
            TrialStatus::WrongResult => "wrong_result",
            TrialStatus::Timeout => "timeout",
        }
    }

    pub fn is_ok(self) -> bool {
        self == TrialStatus::Ok
    }
}

impl fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status spelling that is not one of [`TrialStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trial status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for TrialStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrialStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for status in TrialStatus::ALL {
            assert_eq!(status.as_str().parse::<TrialStatus>(), Ok(status));
            let json = serde_json::to_string(&status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("fast".parse::<TrialStatus>().is_err());
    }
}
