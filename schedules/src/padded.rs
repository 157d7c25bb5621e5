//! Zero- (or −∞-) padded, phase-split copies of input planes, shared by conv and pooling.
//!
//! Plane `(channel, row phase ph, column phase pw)` holds `hq × wq` grid positions; grid position
//! `(y, x)` is input pixel `(y·sh + ph − pad_top, x·sw + pw − pad_left)` or the pad value. With that
//! layout a window tap reads one phase plane at a whole-step offset, so every output row is a
//! contiguous run of the copy whatever the stride, and no read needs a bounds check.

use autotune_ir::{BufId, CmpOp, Expr, LoopKind, NestBuilder, Stmt};

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
    /// Vector width of the copy.
    pub lanes: i64,
}

impl PhaseSplit {
    /// A plain zero-padded copy (one phase): `grid` rows and columns per channel, the input at
    /// `pad` (top, left) inside.
    pub fn padded(
        channels: i64,
        (h, w): (i64, i64),
        pad: (i64, i64),
        grid: (i64, i64),
        lanes: i64,
    ) -> PhaseSplit {
        PhaseSplit { channels, h, w, stride: (1, 1), pad, grid, taps: (1, 1), dilation: (1, 1), lanes }
    }

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

    /// Fills the phase planes taps read, every element written once: whole pad rows above and
    /// below the input, and on each row that meets the input the pad columns left and right of
    /// the copied run. `src_plane(ch)` is the flat index of channel `ch`'s first element in `src`.
    /// The channel loop is `channel_loop` (conv: `Parallel`, so the copy is not a serial part of
    /// a multi-threaded kernel).
    pub fn fill(
        &self,
        b: &mut NestBuilder,
        src: BufId,
        src_plane: &dyn Fn(Expr) -> Expr,
        dst: BufId,
        pad_value: f32,
        channel_loop: LoopKind,
    ) -> Vec<Stmt> {
        let ((sh, sw), (pt, pl), (hq, wq)) = (self.stride, self.pad, self.grid);
        let (h, w, plane) = (self.h, self.w, self.plane());
        let ch = b.var("fc");
        let mut per_channel = Vec::new();
        for ph in Self::used_phases(self.taps.0, self.dilation.0, sh) {
            for pw in Self::used_phases(self.taps.1, self.dilation.1, sw) {
                let base = ((Expr::var(ch) * sh + ph) * sw + pw) * plane;
                // A run of `len` pad values from `start` of this phase plane (none when empty).
                let pad_run = |b: &mut NestBuilder, start: Expr, len: i64| -> Option<Stmt> {
                    let z = b.var("fz");
                    (len > 0).then(|| {
                        Stmt::for_loop(
                            z,
                            Expr::int(0),
                            Expr::int(len),
                            LoopKind::Serial,
                            vec![Stmt::store(
                                dst,
                                base.clone() + start + Expr::var(z),
                                Expr::Float(pad_value),
                            )],
                        )
                    })
                };
                let (y_lo, y_hi) = Self::valid_range(ph, sh, pt, h, hq);
                let (x_lo, x_hi) = Self::valid_range(pw, sw, pl, w, wq);
                if y_lo >= y_hi || x_lo >= x_hi {
                    per_channel.extend(pad_run(b, Expr::int(0), plane));
                    continue;
                }
                per_channel.extend(pad_run(b, Expr::int(0), y_lo * wq));
                let (y, x) = (b.var("fy"), b.var("fx"));
                let row = Expr::var(y) * wq;
                let from = |x: Expr| {
                    src_plane(Expr::var(ch)) + (Expr::var(y) * sh + (ph - pt)) * w + x * sw + (pw - pl)
                };
                let to = |x: Expr| base.clone() + row.clone() + x;
                let mut row_body: Vec<Stmt> = pad_run(b, row.clone(), x_lo).into_iter().collect();
                // The copied run: whole vectors (a unit or stride-2 source, which the code
                // generator loads as vectors; a wider stride would be read lane by lane), then
                // single elements.
                let n_vec = if sw <= 2 { (x_hi - x_lo) / self.lanes } else { 0 };
                if n_vec > 0 {
                    let (xv, lane) = (b.var("fxv"), b.var("flane"));
                    let at = Expr::int(x_lo) + Expr::var(xv) * self.lanes + Expr::var(lane);
                    row_body.push(Stmt::for_loop(
                        xv,
                        Expr::int(0),
                        Expr::int(n_vec),
                        LoopKind::Serial,
                        vec![Stmt::for_loop(
                            lane,
                            Expr::int(0),
                            Expr::int(self.lanes),
                            LoopKind::Vectorized,
                            vec![Stmt::store(dst, to(at.clone()), Expr::load(src, from(at)))],
                        )],
                    ));
                }
                let x_rest = x_lo + n_vec * self.lanes;
                if x_rest < x_hi {
                    row_body.push(Stmt::for_loop(
                        x,
                        Expr::int(x_rest),
                        Expr::int(x_hi - x_rest),
                        LoopKind::Serial,
                        vec![Stmt::store(dst, to(Expr::var(x)), Expr::load(src, from(Expr::var(x))))],
                    ));
                }
                row_body.extend(pad_run(b, row.clone() + x_hi, wq - x_hi));
                per_channel.push(Stmt::for_loop(
                    y,
                    Expr::int(y_lo),
                    Expr::int(y_hi - y_lo),
                    LoopKind::Serial,
                    row_body,
                ));
                per_channel.extend(pad_run(b, Expr::int(y_hi * wq), (hq - y_hi) * wq));
            }
        }
        vec![Stmt::for_loop(ch, Expr::int(0), Expr::int(self.channels), channel_loop, per_channel)]
    }
}

/// Zeroes the border of `planes` consecutive planes of `rows × row_len` elements in `dst`,
/// leaving alone the interior of `inner_rows × inner_len` elements at (`top`, `left`): the rows
/// above and below it, and on each row between, the runs left and right of it. The producer's
/// half of a [`autotune_ir::Halo`]; one pass, serial (a border is a few percent of the plane).
pub(crate) fn zero_border(
    b: &mut NestBuilder,
    dst: BufId,
    planes: i64,
    (rows, row_len): (i64, i64),
    (top, left): (i64, i64),
    (inner_rows, inner_len): (i64, i64),
) -> Vec<Stmt> {
    let (p, y) = (b.var("zb_plane"), b.var("zb_row"));
    let plane = Expr::var(p) * (rows * row_len);
    let zeros = |b: &mut NestBuilder, start: Expr, len: i64| -> Option<Stmt> {
        let z = b.var("zb");
        (len > 0).then(|| {
            Stmt::for_loop(
                z,
                Expr::int(0),
                Expr::int(len),
                LoopKind::Serial,
                vec![Stmt::store(dst, start + Expr::var(z), Expr::Float(0.0))],
            )
        })
    };
    let row = plane.clone() + Expr::var(y) * row_len;
    let right = row_len - left - inner_len;
    let mut each_row: Vec<Stmt> = zeros(b, row.clone(), left).into_iter().collect();
    each_row.extend(zeros(b, row + (left + inner_len), right));
    let mut per_plane: Vec<Stmt> = zeros(b, plane.clone(), top * row_len).into_iter().collect();
    if !each_row.is_empty() {
        per_plane.push(Stmt::for_loop(y, Expr::int(top), Expr::int(inner_rows), LoopKind::Serial, each_row));
    }
    let below = top + inner_rows;
    per_plane.extend(zeros(b, plane + below * row_len, (rows - below) * row_len));
    vec![Stmt::for_loop(p, Expr::int(0), Expr::int(planes), LoopKind::Serial, per_plane)]
}

/// Whether input position (`iy`, `ix`) lies inside an `h × w` plane (not in its padding): the
/// guard of a window read that skips padding instead of reading a padded copy.
pub(crate) fn inside_plane(iy: Expr, ix: Expr, h: i64, w: i64) -> Expr {
    iy.clone()
        .cmp(CmpOp::Ge, Expr::int(0))
        .and(iy.cmp(CmpOp::Lt, Expr::int(h)))
        .and(ix.clone().cmp(CmpOp::Ge, Expr::int(0)))
        .and(ix.cmp(CmpOp::Lt, Expr::int(w)))
}

/// Where tap `tap` of a kernel axis with dilation `dilation` reads in a phase-split copy strided
/// by `stride`: (phase, whole-step shift within the phase). Constants once the taps are unrolled.
pub(crate) fn tap_offset(tap: Expr, dilation: i64, stride: i64) -> (Expr, Expr) {
    if stride == 1 {
        (Expr::int(0), tap * dilation)
    } else {
        ((tap.clone() * dilation) % Expr::int(stride), (tap * dilation).floor_div(Expr::int(stride)))
    }
}
