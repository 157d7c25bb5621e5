//! The trace argument the measure examples share: a trace as JSON (`trial.trace_json`), or
//! `k=v,k=v` to change decisions of the space's default trace.

use autotune_ir::Trace;

pub fn parse(default: &Trace, text: &str) -> Result<Trace, Box<dyn std::error::Error>> {
    if text.starts_with('{') {
        return Ok(Trace::from_json(text)?);
    }
    let mut trace = default.clone();
    for kv in text.split(',') {
        let (k, v) = kv.split_once('=').ok_or("expected k=v")?;
        let d = trace.decisions.iter_mut().find(|d| d.name == k).ok_or(format!("no decision {k}"))?;
        d.value = v.parse()?;
    }
    Ok(trace)
}
