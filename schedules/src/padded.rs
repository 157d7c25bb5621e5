//! Zero- (or −∞-) padded, phase-split copies of input planes, shared by conv and pooling.
//!
//! Plane `(channel, row phase ph, column phase pw)` holds `hq × wq` grid positions; grid position
//! `(y, x)` is input pixel `(y·sh + ph − pad_top, x·sw + pw − pad_left)` or the pad value. With that
//! layout a window tap reads one phase plane at a whole-step offset, so every output row is a
//! contiguous run of the copy whatever the stride, and no read needs a bounds check.

use autotune_ir::{BufId, Expr, LoopKind, NestBuilder, Stmt};

#[derive(Clone, Copy, Debug)]
pub(crate) struct PhaseSplit {
    pub channels: i64,
    pub h: i64,
    pub w: i64,
    pub stride: (i64, i64),
    pub pad: (i64, i64),
    pub grid: (i64, i64),
    /// Kernel extent and dilation per axis: only the phases some tap reads are filled (a 1×1
    /// stride-2 conv reads one phase of four).
    pub taps: (i64, i64),
    pub dilation: (i64, i64),
}

impl PhaseSplit {
    pub fn plane(&self) -> i64 {
        self.grid.0 * self.grid.1
    }

    pub fn len(&self) -> usize {
        (self.channels * self.stride.0 * self.stride.1 * self.plane()) as usize
    }

    /// Grid positions `[lo, hi)` of one phase that land inside the input: computed here, so the
    /// fill loops need no bounds checks.
    fn valid_range(phase: i64, stride: i64, pad: i64, size: i64, limit: i64) -> (i64, i64) {
        let lo = if pad > phase { (pad - phase + stride - 1) / stride } else { 0 };
        let hi = ((size - 1 + pad - phase).div_euclid(stride) + 1).min(limit);
        (lo, hi.max(lo))
    }

    /// Phases of one axis that some tap reads: `{k·d mod s : k < taps}`.
    fn used_phases(taps: i64, dilation: i64, stride: i64) -> Vec<i64> {
        let mut used: Vec<i64> = (0..taps).map(|k| (k * dilation) % stride).collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    /// Fills the phase planes taps read: `pad_value`, then every input position landing there.
    /// `src_plane(ch)` is the flat index of channel `ch`'s first element in `src`.
    pub fn fill(
        &self,
        b: &mut NestBuilder,
        src: BufId,
        src_plane: &dyn Fn(Expr) -> Expr,
        dst: BufId,
        pad_value: f32,
    ) -> Vec<Stmt> {
        let ((sh, sw), (pt, pl), (hq, wq)) = (self.stride, self.pad, self.grid);
        let (h, w, plane) = (self.h, self.w, self.plane());
        let mut stmts = Vec::new();
        for ph in Self::used_phases(self.taps.0, self.dilation.0, sh) {
            for pw in Self::used_phases(self.taps.1, self.dilation.1, sw) {
                let (ch, z) = (b.var("fc"), b.var("fz"));
                let phase_plane = |ch: Expr| (ch * sh + ph) * sw + pw;
                stmts.push(Stmt::for_loop(
                    ch,
                    Expr::int(0),
                    Expr::int(self.channels),
                    LoopKind::Serial,
                    vec![Stmt::for_loop(
                        z,
                        Expr::int(0),
                        Expr::int(plane),
                        LoopKind::Serial,
                        vec![Stmt::store(
                            dst,
                            phase_plane(Expr::var(ch)) * plane + Expr::var(z),
                            Expr::Float(pad_value),
                        )],
                    )],
                ));
                let (y_lo, y_hi) = Self::valid_range(ph, sh, pt, h, hq);
                let (x_lo, x_hi) = Self::valid_range(pw, sw, pl, w, wq);
                if y_lo >= y_hi || x_lo >= x_hi {
                    continue;
                }
                let (ch, y, x) = (b.var("fc"), b.var("fy"), b.var("fx"));
                let to = phase_plane(Expr::var(ch)) * plane + Expr::var(y) * wq + Expr::var(x);
                let from = src_plane(Expr::var(ch))
                    + (Expr::var(y) * sh + (ph - pt)) * w
                    + Expr::var(x) * sw
                    + (pw - pl);
                let row = Stmt::for_loop(
                    x,
                    Expr::int(x_lo),
                    Expr::int(x_hi - x_lo),
                    LoopKind::Serial,
                    vec![Stmt::store(dst, to, Expr::load(src, from))],
                );
                let rows =
                    Stmt::for_loop(y, Expr::int(y_lo), Expr::int(y_hi - y_lo), LoopKind::Serial, vec![row]);
                stmts.push(Stmt::for_loop(
                    ch,
                    Expr::int(0),
                    Expr::int(self.channels),
                    LoopKind::Serial,
                    vec![rows],
                ));
            }
        }
        stmts
    }
}
