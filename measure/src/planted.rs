//! Planted faults: real JIT'd kernels that crash, scribble or hang, so the isolation the tuner
//! promises (a bad kernel is a recorded error, never the end of the run) is tested on real code,
//! not only on a fake worker.
//!
//! A fault is requested by the trace decision [`PLANTED_FAULT_DECISION`], which no schedule space
//! ever samples, and is honoured only by a worker started with [`PLANT_FAULTS_ARG`] (tests do
//! that); any other runner lowers such a trace as if the decision were not there.

use autotune_ir::{BufScope, Expr, Loop, LoopKind, LoopNest, Program, Stmt, Trace};

/// The trace decision that asks for a planted fault; its value is a [`PlantedFault`] code.
pub const PLANTED_FAULT_DECISION: &str = "test_only_planted_fault";
/// The measurement worker's flag that turns planted faults on.
pub const PLANT_FAULTS_ARG: &str = "--test-only-plant-faults";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedFault {
    /// A store 4 TiB past an output: SIGSEGV.
    Segfault = 1,
    /// A store just past the end of an output, inside mapped memory: silent heap corruption
    /// unless the measurement's guard zones catch it.
    OutOfBoundsWrite = 2,
    /// The whole kernel repeated (practically) forever.
    Hang = 3,
}

impl PlantedFault {
    pub fn code(self) -> i64 {
        self as i64
    }

    fn of_code(code: i64) -> Option<PlantedFault> {
        [PlantedFault::Segfault, PlantedFault::OutOfBoundsWrite, PlantedFault::Hang]
            .into_iter()
            .find(|f| f.code() == code)
    }

    /// `trace` with this fault requested.
    pub fn plant_in(self, trace: &Trace) -> Trace {
        let mut planted = trace.clone();
        planted
            .decisions
            .push(autotune_ir::Decision { name: PLANTED_FAULT_DECISION.into(), value: self.code() });
        planted
    }
}

/// Splits the planted-fault request off a trace: the trace the space lowers, and the fault.
pub fn take_planted_fault(trace: &Trace) -> (Trace, Option<PlantedFault>) {
    let mut clean = trace.clone();
    let fault = clean
        .decisions
        .iter()
        .position(|d| d.name == PLANTED_FAULT_DECISION)
        .map(|i| clean.decisions.remove(i).value)
        .and_then(PlantedFault::of_code);
    (clean, fault)
}

/// Rewrites a lowered kernel so that it commits `fault` when run.
pub fn plant(program: &mut Program, fault: PlantedFault) {
    let kernel = &mut program.kernel;
    let Some(&output) = kernel.params.last() else { return };
    let output_len = kernel.buffer(output).len as i64;
    debug_assert_eq!(kernel.buffer(output).scope, BufScope::Param);
    match fault {
        PlantedFault::Segfault => {
            kernel.body.insert(0, Stmt::store(output, Expr::int(1 << 40), Expr::float(0.0)));
        }
        PlantedFault::OutOfBoundsWrite => {
            kernel.body.push(Stmt::store(output, Expr::int(output_len), Expr::float(1.0)));
        }
        PlantedFault::Hang => {
            let var = new_var(kernel, "planted_hang");
            let body = std::mem::take(&mut kernel.body);
            kernel.body = vec![Stmt::For(Loop {
                var,
                min: Expr::int(0),
                extent: Expr::int(i64::MAX / 2),
                kind: LoopKind::Serial,
                body,
            })];
        }
    }
}

fn new_var(kernel: &mut LoopNest, name: &str) -> autotune_ir::VarId {
    kernel.var_names.push(name.to_string());
    autotune_ir::VarId(kernel.var_names.len() as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_fault_round_trips_through_the_trace_and_leaves_the_schedule_alone() {
        let trace = Trace::new("gemm", vec![("mr", 4), ("nr", 2)]);
        for fault in [PlantedFault::Segfault, PlantedFault::OutOfBoundsWrite, PlantedFault::Hang] {
            let planted = fault.plant_in(&trace);
            assert_ne!(planted.key(), trace.key(), "a planted trace is a different trial");
            assert_eq!(take_planted_fault(&planted), (trace.clone(), Some(fault)));
        }
        assert_eq!(take_planted_fault(&trace), (trace.clone(), None));
    }
}
