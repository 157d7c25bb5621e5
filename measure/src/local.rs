//! In-process runner: builds a batch in parallel (rayon), then checks and times one candidate at
//! a time. Fast, but a crashing or hanging kernel takes the process with it, so the CLI uses the
//! worker-process runner ([`crate::WorkerRunner`]), which wraps this one in a child process.

use crate::protocol::{check_and_time, MeasureConfig, ReferenceData};
use crate::worker::Streamed;
use crate::{MeasureError, MeasureOutcome, Runner};
use autotune_codegen::{CpuBuilder, CpuProgram, HostRuntime};
use autotune_ir::{Program, Target, Task, Trace, TrialStatus};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug)]
pub struct LocalRunner {
    target: Target,
    builder: CpuBuilder,
    runtime: HostRuntime,
    config: MeasureConfig,
    reference: Option<ReferenceData>,
}

type Built = Result<(CpuProgram, f64), (TrialStatus, String, f64)>;

impl LocalRunner {
    pub fn new(target: &Target, config: MeasureConfig) -> Result<LocalRunner, MeasureError> {
        let builder = CpuBuilder::new(target).map_err(|e| MeasureError::Setup(e.to_string()))?;
        let runtime =
            HostRuntime::new(target.threads() as usize).map_err(|e| MeasureError::Setup(e.to_string()))?;
        Ok(LocalRunner { target: target.clone(), builder, runtime, config, reference: None })
    }

    /// Builds (in parallel) and measures (one at a time) already-lowered candidates. A lowering
    /// failure comes in as `Err(text)` and goes out as `build_error`.
    pub fn measure_nests(&mut self, task: &Task, nests: Vec<Result<Program, String>>) -> Vec<MeasureOutcome> {
        let mut outcomes = Vec::with_capacity(nests.len());
        let _ = self.measure_nests_streaming(task, nests, &mut |event| {
            if let Streamed::Outcome(o) = event {
                outcomes.push(o);
            }
            Ok(())
        });
        outcomes
    }

    /// As [`Self::measure_nests`], reporting "built" once and then each outcome as it is ready.
    pub(crate) fn measure_nests_streaming(
        &mut self,
        task: &Task,
        nests: Vec<Result<Program, String>>,
        on_event: &mut dyn FnMut(Streamed) -> Result<(), MeasureError>,
    ) -> Result<(), MeasureError> {
        // A batch may hold one program more than once (a leader timed in several windows): each
        // distinct program is built once, and every copy of it is checked and timed on its own.
        let mut slot_of: Vec<usize> = Vec::with_capacity(nests.len());
        let mut distinct: Vec<Result<Program, String>> = Vec::with_capacity(nests.len());
        for nest in nests {
            let copy_of = match &nest {
                Ok(program) => distinct.iter().position(|other| other.as_ref() == Ok(program)),
                Err(_) => None,
            };
            slot_of.push(copy_of.unwrap_or(distinct.len()));
            if copy_of.is_none() {
                distinct.push(nest);
            }
        }
        let builder = &self.builder;
        let built: Vec<Built> = distinct
            .into_par_iter()
            .map(|nest| {
                let start = Instant::now();
                let nest = nest.map_err(|e| (TrialStatus::BuildError, e, 0.0))?;
                let kernel = builder
                    .build_program(&nest)
                    .map_err(|e| (TrialStatus::BuildError, e.to_string(), start.elapsed().as_secs_f64()))?;
                Ok((kernel, start.elapsed().as_secs_f64()))
            })
            .collect();
        on_event(Streamed::Built)?;
        let config = self.config.clone();
        let seed = config.input_seed;
        if self.reference.as_ref().is_none_or(|r| r.task != *task) {
            self.reference = Some(ReferenceData::new(task, seed));
        }
        let (runtime, reference) = (&self.runtime, self.reference.as_ref());
        for &slot in &slot_of {
            let outcome = match (&built[slot], reference) {
                (Ok((kernel, build_s)), Some(data)) => {
                    check_and_time(kernel, runtime, data, &config, *build_s)
                }
                (Ok((_, build_s)), None) => {
                    MeasureOutcome::failed(TrialStatus::RunError, "no reference", *build_s)
                }
                (Err((status, text, build_s)), _) => MeasureOutcome::failed(*status, text.clone(), *build_s),
            };
            on_event(Streamed::Outcome(outcome))?;
        }
        Ok(())
    }
}

impl Runner for LocalRunner {
    fn target(&self) -> &Target {
        &self.target
    }

    fn measure_batch(&mut self, task: &Task, traces: &[Trace]) -> Vec<MeasureOutcome> {
        let nests = match autotune_schedules::space_for(task, &self.target) {
            // In-process, a planted fault would take this process down: it is never honoured.
            Ok(space) => traces
                .iter()
                .map(|t| space.lower(&crate::planted::take_planted_fault(t).0).map_err(|e| e.to_string()))
                .collect(),
            Err(e) => traces.iter().map(|_| Err(e.to_string())).collect(),
        };
        self.measure_nests(task, nests)
    }
}
