//! LoopNest → LLVM IR. One LLVM function per kernel plus one per parallel loop (outlined, called
//! back through the host's thread pool).

use crate::runtime::{autotune_alloc, autotune_free, autotune_parallel_for};
use crate::CodegenError;
use autotune_ir::{BinOp, BufId, BufScope, CmpOp, Expr, Loop, LoopKind, LoopNest, Stmt, UnaryOp, VarId};
use inkwell::attributes::AttributeLoc;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, FloatType, IntType, PointerType};
use inkwell::values::{BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use std::collections::HashMap;

/// Function attributes that make the JIT emit code for this CPU (MCJIT otherwise targets a generic
/// x86-64 and every kernel runs on SSE2).
#[derive(Clone, Debug)]
pub(crate) struct CpuAttributes {
    pub cpu: String,
    pub features: String,
    /// 512 when the kernels may use zmm registers.
    pub vector_bits: u32,
    /// Without FMA, `llvm.fma` becomes a libm call per lane (correctly rounded in software);
    /// `llvm.fmuladd` becomes a multiply and an add.
    pub has_fma: bool,
}

/// Names of the host callbacks, mapped to Rust functions when the engine is created.
pub(crate) const HOST_PARALLEL_FOR: &str = "autotune_parallel_for";
pub(crate) const HOST_ALLOC: &str = "autotune_alloc";
pub(crate) const HOST_FREE: &str = "autotune_free";

pub(crate) fn host_symbol_addresses() -> [(&'static str, usize); 3] {
    [
        (HOST_PARALLEL_FOR, autotune_parallel_for as *const () as usize),
        (HOST_ALLOC, autotune_alloc as *const () as usize),
        (HOST_FREE, autotune_free as *const () as usize),
    ]
}

type Result<T> = std::result::Result<T, CodegenError>;

fn err(msg: impl Into<String>) -> CodegenError {
    CodegenError::Unsupported(msg.into())
}

impl From<inkwell::builder::BuilderError> for CodegenError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        CodegenError::Llvm(e.to_string())
    }
}

/// A floating value during lowering: a scalar, or one vector of the enclosing vectorized loop.
#[derive(Clone, Copy)]
enum Val<'ctx> {
    Scalar(FloatValue<'ctx>),
    Vector(VectorValue<'ctx>),
}

struct Types<'ctx> {
    i64: IntType<'ctx>,
    f32: FloatType<'ctx>,
    ptr: PointerType<'ctx>,
}

pub(crate) struct ModuleLowering<'a, 'ctx> {
    cx: &'ctx Context,
    module: &'a Module<'ctx>,
    nest: &'a LoopNest,
    attrs: CpuAttributes,
    t: Types<'ctx>,
    n_outlined: usize,
}

/// Per-function lowering state.
struct FnState<'ctx> {
    func: FunctionValue<'ctx>,
    builder: Builder<'ctx>,
    runtime: PointerValue<'ctx>,
    vars: HashMap<VarId, IntValue<'ctx>>,
    bufs: HashMap<BufId, PointerValue<'ctx>>,
    /// The variable and lane count of the enclosing vectorized loop.
    vector: Option<(VarId, u32)>,
    in_parallel: bool,
}

pub(crate) const ENTRY_SUFFIX: &str = "_entry";

impl<'a, 'ctx> ModuleLowering<'a, 'ctx> {
    pub(crate) fn new(
        cx: &'ctx Context,
        module: &'a Module<'ctx>,
        nest: &'a LoopNest,
        attrs: CpuAttributes,
    ) -> Self {
        let t = Types { i64: cx.i64_type(), f32: cx.f32_type(), ptr: cx.ptr_type(AddressSpace::default()) };
        ModuleLowering { cx, module, nest, attrs, t, n_outlined: 0 }
    }

    fn add_cpu_attributes(&self, func: FunctionValue<'ctx>) {
        let add = |k: &str, v: &str| {
            func.add_attribute(AttributeLoc::Function, self.cx.create_string_attribute(k, v));
        };
        add("target-cpu", &self.attrs.cpu);
        add("target-features", &self.attrs.features);
        if self.attrs.vector_bits >= 512 {
            // Without these, CPUs tuned to "prefer 256-bit" split every zmm operation in two.
            add("prefer-vector-width", "512");
            add("min-legal-vector-width", "512");
        }
        let nounwind = inkwell::attributes::Attribute::get_named_enum_kind_id("nounwind");
        func.add_attribute(AttributeLoc::Function, self.cx.create_enum_attribute(nounwind, 0));
    }

    /// Emits `void <name>_entry(ptr runtime, ptr args)` where `args` is an array of buffer
    /// pointers in `nest.params` order.
    pub(crate) fn lower_kernel(&mut self) -> Result<String> {
        let name = format!("{}{}", sanitize(&self.nest.name), ENTRY_SUFFIX);
        let fn_type = self.cx.void_type().fn_type(&[self.t.ptr.into(), self.t.ptr.into()], false);
        let func = self.module.add_function(&name, fn_type, Some(Linkage::External));
        self.add_cpu_attributes(func);
        let entry = self.cx.append_basic_block(func, "entry");
        let builder = self.cx.create_builder();
        builder.position_at_end(entry);
        let runtime = func.get_nth_param(0).ok_or_else(|| err("missing param"))?.into_pointer_value();
        let args = func.get_nth_param(1).ok_or_else(|| err("missing param"))?.into_pointer_value();
        let mut st = FnState {
            func,
            builder,
            runtime,
            vars: HashMap::new(),
            bufs: HashMap::new(),
            vector: None,
            in_parallel: false,
        };
        for (i, &buf) in self.nest.params.iter().enumerate() {
            // The caller passes exactly params.len() pointers in the args array.
            let slot = self.gep(&st, self.t.ptr.into(), args, self.t.i64.const_int(i as u64, false))?;
            let p =
                st.builder.build_load(self.t.ptr, slot, &format!("arg_{}", self.nest.buffer(buf).name))?;
            st.bufs.insert(buf, p.into_pointer_value());
        }
        self.lower_block(&mut st, &self.nest.body)?;
        st.builder.build_return(None)?;
        Ok(name)
    }

    fn gep(
        &self,
        st: &FnState<'ctx>,
        elem: inkwell::types::BasicTypeEnum<'ctx>,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
    ) -> Result<PointerValue<'ctx>> {
        #[allow(unsafe_code)]
        // SAFETY: building a GEP instruction is not itself unsafe at run time; the index is a
        // valid i64 value. (inkwell marks it unsafe because an out-of-range GEP is UB when used.)
        let p = unsafe { st.builder.build_in_bounds_gep(elem, base, &[index], "p")? };
        Ok(p)
    }

    fn lower_block(&mut self, st: &mut FnState<'ctx>, body: &[Stmt]) -> Result<()> {
        for stmt in body {
            self.lower_stmt(st, stmt)?;
        }
        Ok(())
    }

    fn lower_stmt(&mut self, st: &mut FnState<'ctx>, stmt: &Stmt) -> Result<()> {
        match stmt {
            Stmt::For(l) => self.lower_loop(st, l),
            Stmt::Store { buf, index, value } => self.lower_store(st, *buf, index, value),
            Stmt::Prefetch { buf, index } => self.lower_prefetch(st, *buf, index),
            Stmt::Allocate { buf, body } => self.lower_allocate(st, *buf, body),
            // A CPU kernel has no thread blocks: GPU nests run on the host only after
            // `gpu_nest_for_host` split their thread loops at every barrier.
            Stmt::Barrier => Err(err("a GPU barrier in a CPU kernel (lower it with gpu_nest_for_host)")),
            Stmt::If { cond, then_body, else_body } => {
                if st.vector.is_some() {
                    return Err(err("an `if` inside a vectorized loop"));
                }
                let c = self.int_expr(st, cond)?;
                let c = self.truthy(st, c)?;
                let then_bb = self.cx.append_basic_block(st.func, "then");
                let else_bb = self.cx.append_basic_block(st.func, "else");
                let join_bb = self.cx.append_basic_block(st.func, "endif");
                st.builder.build_conditional_branch(c, then_bb, else_bb)?;
                st.builder.position_at_end(then_bb);
                self.lower_block(st, then_body)?;
                st.builder.build_unconditional_branch(join_bb)?;
                st.builder.position_at_end(else_bb);
                self.lower_block(st, else_body)?;
                st.builder.build_unconditional_branch(join_bb)?;
                st.builder.position_at_end(join_bb);
                Ok(())
            }
        }
    }

    fn truthy(&self, st: &FnState<'ctx>, v: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        if v.get_type().get_bit_width() == 1 {
            Ok(v)
        } else {
            Ok(st.builder.build_int_compare(IntPredicate::NE, v, v.get_type().const_zero(), "nz")?)
        }
    }

    fn lower_allocate(&mut self, st: &mut FnState<'ctx>, buf: BufId, body: &[Stmt]) -> Result<()> {
        let decl = self.nest.buffer(buf);
        let bytes = (decl.len * decl.dtype.size_bytes()) as u64;
        match decl.scope {
            BufScope::Param => return Err(err(format!("allocate of parameter buffer {}", decl.name))),
            BufScope::Shared => return Err(err("shared memory on a CPU")),
            BufScope::Register => {
                // Allocas in the entry block so SROA/mem2reg can promote the tile to registers.
                let entry = st.func.get_first_basic_block().ok_or_else(|| err("no entry block"))?;
                let saved = st.builder.get_insert_block();
                match entry.get_first_instruction() {
                    Some(first) => st.builder.position_before(&first),
                    None => st.builder.position_at_end(entry),
                }
                let arr = self.t.f32.array_type(decl.len as u32);
                let p = st.builder.build_alloca(arr, &decl.name)?;
                if let Some(inst) = p.as_instruction() {
                    inst.set_alignment(64).map_err(|e| CodegenError::Llvm(e.to_string()))?;
                }
                if let Some(bb) = saved {
                    st.builder.position_at_end(bb);
                }
                st.bufs.insert(buf, p);
                self.lower_block(st, body)?;
            }
            BufScope::Heap => {
                let alloc = self.host_fn(HOST_ALLOC)?;
                let free = self.host_fn(HOST_FREE)?;
                let size = self.t.i64.const_int(bytes, false);
                let p = st
                    .builder
                    .build_call(alloc, &[size.into()], &decl.name)?
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| err("alloc returned void"))?
                    .into_pointer_value();
                st.bufs.insert(buf, p);
                self.lower_block(st, body)?;
                st.builder.build_call(free, &[p.into(), size.into()], "")?;
            }
        }
        st.bufs.remove(&buf);
        Ok(())
    }

    fn host_fn(&self, name: &str) -> Result<FunctionValue<'ctx>> {
        if let Some(f) = self.module.get_function(name) {
            return Ok(f);
        }
        let t = &self.t;
        let fn_type = match name {
            HOST_ALLOC => t.ptr.fn_type(&[t.i64.into()], false),
            HOST_FREE => self.cx.void_type().fn_type(&[t.ptr.into(), t.i64.into()], false),
            HOST_PARALLEL_FOR => {
                self.cx.void_type().fn_type(&[t.ptr.into(), t.ptr.into(), t.ptr.into(), t.i64.into()], false)
            }
            _ => return Err(err(format!("unknown host function {name}"))),
        };
        Ok(self.module.add_function(name, fn_type, Some(Linkage::External)))
    }

    // ---- loops ------------------------------------------------------------------------------

    fn lower_loop(&mut self, st: &mut FnState<'ctx>, l: &Loop) -> Result<()> {
        if st.vector.is_some() {
            return Err(err("a loop nested inside a vectorized loop"));
        }
        match l.kind {
            LoopKind::Serial => self.lower_serial(st, l, 1),
            LoopKind::UnrollBy(n) => self.lower_serial(st, l, n.max(1)),
            LoopKind::Unrolled => {
                let extent = const_extent(l)?;
                let min = self.int_expr(st, &l.min)?;
                for j in 0..extent {
                    let v = st.builder.build_int_add(min, self.t.i64.const_int(j as u64, false), "u")?;
                    st.vars.insert(l.var, v);
                    self.lower_block(st, &l.body)?;
                }
                st.vars.remove(&l.var);
                Ok(())
            }
            LoopKind::Vectorized => {
                let lanes = const_extent(l)?;
                if !(1..=64).contains(&lanes) {
                    return Err(err(format!("vectorized loop of {lanes} lanes")));
                }
                let min = self.int_expr(st, &l.min)?;
                st.vars.insert(l.var, min);
                st.vector = Some((l.var, lanes as u32));
                let result = self.lower_block(st, &l.body);
                st.vector = None;
                st.vars.remove(&l.var);
                result
            }
            LoopKind::Parallel if st.in_parallel => self.lower_serial(st, l, 1),
            LoopKind::Parallel => self.lower_parallel(st, l),
            LoopKind::GpuBlock(_) | LoopKind::GpuThread(_) => Err(err("GPU loop binding on a CPU target")),
        }
    }

    /// `for v in min..min+extent` with the body replicated `unroll` times per iteration and a
    /// remainder loop for the rest.
    fn lower_serial(&mut self, st: &mut FnState<'ctx>, l: &Loop, unroll: u32) -> Result<()> {
        let min = self.int_expr(st, &l.min)?;
        let extent = self.int_expr(st, &l.extent)?;
        let end = st.builder.build_int_add(min, extent, "end")?;
        if unroll <= 1 {
            return self.emit_counted_loop(st, l, min, end, 1);
        }
        let u = self.t.i64.const_int(unroll as u64, false);
        // extent >= 0 for loops the schedules emit; a negative extent runs nothing either way.
        let main_extent =
            st.builder.build_int_mul(st.builder.build_int_signed_div(extent, u, "q")?, u, "me")?;
        let main_end = st.builder.build_int_add(min, main_extent, "main_end")?;
        self.emit_counted_loop(st, l, min, main_end, unroll)?;
        self.emit_counted_loop(st, l, main_end, end, 1)
    }

    fn emit_counted_loop(
        &mut self,
        st: &mut FnState<'ctx>,
        l: &Loop,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        step: u32,
    ) -> Result<()> {
        let pre = st.builder.get_insert_block().ok_or_else(|| err("no insert block"))?;
        let body_bb = self.cx.append_basic_block(st.func, "loop");
        let exit_bb = self.cx.append_basic_block(st.func, "loop_exit");
        let nonempty = st.builder.build_int_compare(IntPredicate::SLT, start, end, "nonempty")?;
        st.builder.build_conditional_branch(nonempty, body_bb, exit_bb)?;
        st.builder.position_at_end(body_bb);
        let phi = st.builder.build_phi(self.t.i64, self.nest.var_name(l.var))?;
        phi.add_incoming(&[(&start, pre)]);
        let iv = phi.as_basic_value().into_int_value();
        for j in 0..step {
            let v = if j == 0 {
                iv
            } else {
                st.builder.build_int_add(iv, self.t.i64.const_int(j as u64, false), "iv")?
            };
            st.vars.insert(l.var, v);
            self.lower_block(st, &l.body)?;
        }
        st.vars.remove(&l.var);
        let next = st.builder.build_int_add(iv, self.t.i64.const_int(step as u64, false), "next")?;
        let latch = st.builder.get_insert_block().ok_or_else(|| err("no insert block"))?;
        phi.add_incoming(&[(&next, latch)]);
        let more = st.builder.build_int_compare(IntPredicate::SLT, next, end, "more")?;
        st.builder.build_conditional_branch(more, body_bb, exit_bb)?;
        st.builder.position_at_end(exit_bb);
        Ok(())
    }

    /// Outlines the loop body into `fn(ctx: *const i64, iteration: i64)` and hands it to the host
    /// thread pool. Everything the body can see (loop variables, buffer pointers) travels in ctx.
    fn lower_parallel(&mut self, st: &mut FnState<'ctx>, l: &Loop) -> Result<()> {
        let min = self.int_expr(st, &l.min)?;
        let extent = self.int_expr(st, &l.extent)?;
        let mut var_ids: Vec<VarId> = st.vars.keys().copied().collect();
        var_ids.sort();
        let mut buf_ids: Vec<BufId> = st.bufs.keys().copied().collect();
        buf_ids.sort();
        let n_slots = 1 + var_ids.len() + buf_ids.len();

        // Context array in the caller's entry block.
        let entry = st.func.get_first_basic_block().ok_or_else(|| err("no entry block"))?;
        let here = st.builder.get_insert_block().ok_or_else(|| err("no insert block"))?;
        match entry.get_first_instruction() {
            Some(first) => st.builder.position_before(&first),
            None => st.builder.position_at_end(entry),
        }
        let ctx_ty = self.t.i64.array_type(n_slots as u32);
        let ctx = st.builder.build_alloca(ctx_ty, "par_ctx")?;
        st.builder.position_at_end(here);
        let slot = |this: &Self, st: &FnState<'ctx>, i: usize| {
            this.gep(st, this.t.i64.into(), ctx, this.t.i64.const_int(i as u64, false))
        };
        st.builder.build_store(slot(self, st, 0)?, min)?;
        for (i, v) in var_ids.iter().enumerate() {
            st.builder.build_store(slot(self, st, 1 + i)?, st.vars[v])?;
        }
        for (i, b) in buf_ids.iter().enumerate() {
            let as_int = st.builder.build_ptr_to_int(st.bufs[b], self.t.i64, "p2i")?;
            st.builder.build_store(slot(self, st, 1 + var_ids.len() + i)?, as_int)?;
        }

        // The outlined body.
        self.n_outlined += 1;
        let name = format!("{}_par{}", sanitize(&self.nest.name), self.n_outlined);
        let params: [BasicMetadataTypeEnum; 2] = [self.t.ptr.into(), self.t.i64.into()];
        let fn_type = self.cx.void_type().fn_type(&params, false);
        let func = self.module.add_function(&name, fn_type, Some(Linkage::Internal));
        self.add_cpu_attributes(func);
        let builder = self.cx.create_builder();
        builder.position_at_end(self.cx.append_basic_block(func, "entry"));
        let ctx_param = func.get_nth_param(0).ok_or_else(|| err("missing param"))?.into_pointer_value();
        let iter = func.get_nth_param(1).ok_or_else(|| err("missing param"))?.into_int_value();
        let mut inner = FnState {
            func,
            builder,
            runtime: st.runtime,
            vars: HashMap::new(),
            bufs: HashMap::new(),
            vector: None,
            in_parallel: true,
        };
        let load_slot = |this: &Self, inner: &FnState<'ctx>, i: usize| -> Result<IntValue<'ctx>> {
            let p = this.gep(inner, this.t.i64.into(), ctx_param, this.t.i64.const_int(i as u64, false))?;
            Ok(inner.builder.build_load(this.t.i64, p, "slot")?.into_int_value())
        };
        let inner_min = load_slot(self, &inner, 0)?;
        for (i, v) in var_ids.iter().enumerate() {
            let value = load_slot(self, &inner, 1 + i)?;
            inner.vars.insert(*v, value);
        }
        for (i, b) in buf_ids.iter().enumerate() {
            let as_int = load_slot(self, &inner, 1 + var_ids.len() + i)?;
            let p = inner.builder.build_int_to_ptr(as_int, self.t.ptr, "i2p")?;
            inner.bufs.insert(*b, p);
        }
        let v = inner.builder.build_int_add(inner_min, iter, "pv")?;
        inner.vars.insert(l.var, v);
        self.lower_block(&mut inner, &l.body)?;
        inner.builder.build_return(None)?;

        // The call into the host pool.
        let parallel_for = self.host_fn(HOST_PARALLEL_FOR)?;
        let body_ptr = func.as_global_value().as_pointer_value();
        st.builder.build_call(
            parallel_for,
            &[st.runtime.into(), body_ptr.into(), ctx.into(), extent.into()],
            "",
        )?;
        Ok(())
    }

    // ---- stores and expressions ---------------------------------------------------------------

    fn lower_store(&mut self, st: &mut FnState<'ctx>, buf: BufId, index: &Expr, value: &Expr) -> Result<()> {
        let base = *st.bufs.get(&buf).ok_or_else(|| err(format!("buffer {} not in scope", buf.0)))?;
        if let Some((var, lanes)) = st.vector {
            let index_varies = depends_on(index, var);
            let value_varies = depends_on(value, var);
            if index_varies && linear_coeff(index, var) == Some(1) {
                let value = self.float_expr(st, value)?;
                let vector = self.splat(st, value, lanes)?;
                let offset = self.int_expr(st, index)?;
                let p = self.gep(st, self.t.f32.into(), base, offset)?;
                let store = st.builder.build_store(p, vector)?;
                store.set_alignment(4).map_err(|e| CodegenError::Llvm(e.to_string()))?;
                return Ok(());
            }
            if index_varies || value_varies {
                // Scatter: one scalar store per lane.
                let saved = st.vars[&var];
                st.vector = None;
                for lane in 0..lanes {
                    let v =
                        st.builder.build_int_add(saved, self.t.i64.const_int(lane as u64, false), "lane")?;
                    st.vars.insert(var, v);
                    self.lower_store(st, buf, index, value)?;
                }
                st.vars.insert(var, saved);
                st.vector = Some((var, lanes));
                return Ok(());
            }
        }
        let v = match self.float_expr(st, value)? {
            Val::Scalar(v) => v,
            Val::Vector(_) => return Err(err("vector value stored to a scalar location")),
        };
        let offset = self.int_expr(st, index)?;
        let p = self.gep(st, self.t.f32.into(), base, offset)?;
        st.builder.build_store(p, v)?;
        Ok(())
    }

    /// `llvm.prefetch` into L2 (`prefetcht1` on x86): a stream prefetched into L1 would evict the
    /// panel the micro-kernel is reading from it.
    fn lower_prefetch(&mut self, st: &mut FnState<'ctx>, buf: BufId, index: &Expr) -> Result<()> {
        if st.vector.is_some() {
            return Err(err("a prefetch inside a vectorized loop"));
        }
        let base = *st.bufs.get(&buf).ok_or_else(|| err(format!("buffer {} not in scope", buf.0)))?;
        let offset = self.int_expr(st, index)?;
        #[allow(unsafe_code)]
        // SAFETY: a plain (not in-bounds) GEP is defined for any offset, and a prefetch of an
        // address outside the buffer is a hint the CPU drops, never a fault.
        let p = unsafe { st.builder.build_gep(self.t.f32, base, &[offset], "pf")? };
        let prefetch = self.intrinsic("llvm.prefetch", self.t.ptr.into())?;
        let i32 = self.cx.i32_type();
        let (read, l2_locality, data_cache) = (0, 2, 1);
        st.builder.build_call(
            prefetch,
            &[
                p.into(),
                i32.const_int(read, false).into(),
                i32.const_int(l2_locality, false).into(),
                i32.const_int(data_cache, false).into(),
            ],
            "",
        )?;
        Ok(())
    }

    fn splat(&self, st: &FnState<'ctx>, v: Val<'ctx>, lanes: u32) -> Result<VectorValue<'ctx>> {
        match v {
            Val::Vector(v) => Ok(v),
            Val::Scalar(s) => {
                let vt = self.t.f32.vec_type(lanes);
                let undef = vt.get_undef();
                let first = st.builder.build_insert_element(undef, s, self.t.i64.const_zero(), "ins")?;
                let mask = self.t.i64.vec_type(lanes).const_zero();
                Ok(st.builder.build_shuffle_vector(first, undef, mask, "splat")?)
            }
        }
    }

    /// Integer (index) expression, always scalar: inside a vectorized loop the loop variable is
    /// bound to the first lane, which is what loads and stores with unit stride need.
    fn int_expr(&self, st: &FnState<'ctx>, e: &Expr) -> Result<IntValue<'ctx>> {
        let b = &st.builder;
        Ok(match e {
            Expr::Int(v) => self.t.i64.const_int(*v as u64, true),
            Expr::Var(v) => *st.vars.get(v).ok_or_else(|| err(format!("variable {} not in scope", v.0)))?,
            Expr::Bin(op, x, y) => {
                let (x, y) = (self.int_expr(st, x)?, self.int_expr(st, y)?);
                match op {
                    BinOp::Add => b.build_int_add(x, y, "add")?,
                    BinOp::Sub => b.build_int_sub(x, y, "sub")?,
                    BinOp::Mul => b.build_int_mul(x, y, "mul")?,
                    BinOp::Div => b.build_int_signed_div(x, y, "div")?,
                    BinOp::Mod => b.build_int_signed_rem(x, y, "rem")?,
                    BinOp::Min => {
                        let c = b.build_int_compare(IntPredicate::SLT, x, y, "lt")?;
                        b.build_select(c, x, y, "min")?.into_int_value()
                    }
                    BinOp::Max => {
                        let c = b.build_int_compare(IntPredicate::SGT, x, y, "gt")?;
                        b.build_select(c, x, y, "max")?.into_int_value()
                    }
                }
            }
            Expr::Cmp(op, x, y) => {
                if is_float(x) {
                    let (x, y) = (self.float_expr(st, x)?, self.float_expr(st, y)?);
                    match (x, y) {
                        (Val::Scalar(x), Val::Scalar(y)) => {
                            b.build_float_compare(float_pred(*op), x, y, "fcmp")?
                        }
                        _ => return Err(err("vector comparison used as a scalar condition")),
                    }
                } else {
                    let (x, y) = (self.int_expr(st, x)?, self.int_expr(st, y)?);
                    b.build_int_compare(int_pred(*op), x, y, "icmp")?
                }
            }
            Expr::And(x, y) => {
                let (x, y) = (self.int_expr(st, x)?, self.int_expr(st, y)?);
                let (x, y) = (self.truthy(st, x)?, self.truthy(st, y)?);
                b.build_and(x, y, "and")?
            }
            Expr::Select(c, x, y) => {
                let c = self.int_expr(st, c)?;
                let c = self.truthy(st, c)?;
                let (x, y) = (self.int_expr(st, x)?, self.int_expr(st, y)?);
                b.build_select(c, x, y, "sel")?.into_int_value()
            }
            Expr::Float(_) | Expr::Fma(..) | Expr::Load { .. } | Expr::Unary(..) => {
                return Err(err("a float expression used as an index"));
            }
        })
    }

    fn float_expr(&self, st: &FnState<'ctx>, e: &Expr) -> Result<Val<'ctx>> {
        if let Some((var, lanes)) = st.vector {
            if depends_on(e, var) {
                return self.vector_expr(st, e, var, lanes);
            }
        }
        let b = &st.builder;
        Ok(Val::Scalar(match e {
            Expr::Float(v) => self.t.f32.const_float(f64::from(*v)),
            Expr::Load { buf, index } => {
                let base = *st.bufs.get(buf).ok_or_else(|| err(format!("buffer {} not in scope", buf.0)))?;
                let offset = self.int_expr(st, index)?;
                let p = self.gep(st, self.t.f32.into(), base, offset)?;
                b.build_load(self.t.f32, p, "ld")?.into_float_value()
            }
            Expr::Bin(op, x, y) => {
                let (x, y) = (self.scalar(st, x)?, self.scalar(st, y)?);
                self.float_bin(st, *op, x, y)?
            }
            Expr::Unary(op, x) => {
                let x = self.scalar(st, x)?;
                self.float_unary(st, *op, x)?
            }
            Expr::Fma(x, y, z) => {
                let (x, y, z) = (self.scalar(st, x)?, self.scalar(st, y)?, self.scalar(st, z)?);
                let f = self.fma_decl(self.t.f32.into())?;
                b.build_call(f, &[x.into(), y.into(), z.into()], "fma")?
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| err("fma returned void"))?
                    .into_float_value()
            }
            Expr::Select(c, x, y) => {
                let c = self.int_expr(st, c)?;
                let c = self.truthy(st, c)?;
                let (x, y) = (self.scalar(st, x)?, self.scalar(st, y)?);
                b.build_select(c, x, y, "sel")?.into_float_value()
            }
            Expr::Int(_) | Expr::Var(_) | Expr::Cmp(..) | Expr::And(..) => {
                return Err(err("an index expression used as a float value"));
            }
        }))
    }

    fn scalar(&self, st: &FnState<'ctx>, e: &Expr) -> Result<FloatValue<'ctx>> {
        match self.float_expr(st, e)? {
            Val::Scalar(v) => Ok(v),
            Val::Vector(_) => Err(err("internal: vector where a scalar was expected")),
        }
    }

    fn float_bin<V>(&self, st: &FnState<'ctx>, op: BinOp, x: V, y: V) -> Result<V>
    where
        V: inkwell::values::FloatMathValue<'ctx>
            + Copy
            + Into<BasicValueEnum<'ctx>>
            + TryFrom<BasicValueEnum<'ctx>>,
    {
        let b = &st.builder;
        Ok(match op {
            BinOp::Add => b.build_float_add(x, y, "fadd")?,
            BinOp::Sub => b.build_float_sub(x, y, "fsub")?,
            BinOp::Mul => b.build_float_mul(x, y, "fmul")?,
            BinOp::Div => b.build_float_div(x, y, "fdiv")?,
            BinOp::Mod => b.build_float_rem(x, y, "frem")?,
            BinOp::Min | BinOp::Max => {
                let name = if op == BinOp::Min { "llvm.minnum" } else { "llvm.maxnum" };
                let ty: BasicValueEnum<'ctx> = x.into();
                let f = self.intrinsic(name, ty.get_type())?;
                let r = b
                    .build_call(f, &[x.into().into(), y.into().into()], "minmax")?
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| err("minmax returned void"))?;
                V::try_from(r).map_err(|_| err("minmax type"))?
            }
        })
    }

    fn float_unary<V>(&self, st: &FnState<'ctx>, op: UnaryOp, x: V) -> Result<V>
    where
        V: inkwell::values::FloatMathValue<'ctx>
            + Copy
            + Into<BasicValueEnum<'ctx>>
            + TryFrom<BasicValueEnum<'ctx>>,
    {
        match op {
            UnaryOp::Neg => Ok(st.builder.build_float_neg(x, "neg")?),
            UnaryOp::Exp => {
                let ty: BasicValueEnum<'ctx> = x.into();
                let f = self.intrinsic("llvm.exp", ty.get_type())?;
                let r = st
                    .builder
                    .build_call(f, &[x.into().into()], "exp")?
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| err("exp returned void"))?;
                V::try_from(r).map_err(|_| err("exp type"))
            }
        }
    }

    fn intrinsic(&self, name: &str, ty: inkwell::types::BasicTypeEnum<'ctx>) -> Result<FunctionValue<'ctx>> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[ty]))
            .ok_or_else(|| err(format!("LLVM intrinsic {name} unavailable")))
    }

    fn fma_decl(&self, ty: inkwell::types::BasicTypeEnum<'ctx>) -> Result<FunctionValue<'ctx>> {
        self.intrinsic(if self.attrs.has_fma { "llvm.fma" } else { "llvm.fmuladd" }, ty)
    }

    /// A float expression that varies across the lanes of the enclosing vectorized loop.
    fn vector_expr(&self, st: &FnState<'ctx>, e: &Expr, var: VarId, lanes: u32) -> Result<Val<'ctx>> {
        let b = &st.builder;
        let vt = self.t.f32.vec_type(lanes);
        let v = match e {
            Expr::Load { buf, index } if linear_coeff(index, var) == Some(1) => {
                let base = *st.bufs.get(buf).ok_or_else(|| err(format!("buffer {} not in scope", buf.0)))?;
                let offset = self.int_expr(st, index)?;
                let p = self.gep(st, self.t.f32.into(), base, offset)?;
                let load = b.build_load(vt, p, "vld")?;
                if let Some(inst) = load.into_vector_value().as_instruction() {
                    inst.set_alignment(4).map_err(|e| CodegenError::Llvm(e.to_string()))?;
                }
                load.into_vector_value()
            }
            // Every second element (a stride-2 phase of an input row): two overlapping unit
            // loads and one shuffle instead of a load per lane. The second load starts one
            // element early so that nothing past the last lane's element is read.
            Expr::Load { buf, index } if linear_coeff(index, var) == Some(2) && lanes >= 2 => {
                let base = *st.bufs.get(buf).ok_or_else(|| err(format!("buffer {} not in scope", buf.0)))?;
                let offset = self.int_expr(st, index)?;
                let second =
                    b.build_int_add(offset, self.t.i64.const_int(u64::from(lanes - 1), false), "odd")?;
                let mut halves = Vec::with_capacity(2);
                for start in [offset, second] {
                    let p = self.gep(st, self.t.f32.into(), base, start)?;
                    let load = b.build_load(vt, p, "vld2")?;
                    if let Some(inst) = load.into_vector_value().as_instruction() {
                        inst.set_alignment(4).map_err(|e| CodegenError::Llvm(e.to_string()))?;
                    }
                    halves.push(load.into_vector_value());
                }
                let pick: Vec<_> = (0..lanes)
                    .map(|i| {
                        let at = if 2 * i < lanes { 2 * i } else { lanes + 2 * i - (lanes - 1) };
                        self.cx.i32_type().const_int(u64::from(at), false)
                    })
                    .collect();
                let mask = inkwell::types::VectorType::const_vector(&pick);
                b.build_shuffle_vector(halves[0], halves[1], mask, "stride2")?
            }
            Expr::Bin(op, x, y) => {
                let x = self.splat(st, self.float_expr(st, x)?, lanes)?;
                let y = self.splat(st, self.float_expr(st, y)?, lanes)?;
                self.float_bin(st, *op, x, y)?
            }
            Expr::Unary(op, x) => {
                let x = self.splat(st, self.float_expr(st, x)?, lanes)?;
                self.float_unary(st, *op, x)?
            }
            // A float comparison selecting between floats: one vector compare and blend.
            Expr::Select(c, x, y) if matches!(&**c, Expr::Cmp(_, a, _) if is_float(a)) => {
                let Expr::Cmp(op, a, b2) = &**c else { return Err(err("internal: select")) };
                let a = self.splat(st, self.float_expr(st, a)?, lanes)?;
                let b2 = self.splat(st, self.float_expr(st, b2)?, lanes)?;
                let mask = b.build_float_compare(float_pred(*op), a, b2, "vcmp")?;
                let x = self.splat(st, self.float_expr(st, x)?, lanes)?;
                let y = self.splat(st, self.float_expr(st, y)?, lanes)?;
                b.build_select(mask, x, y, "vsel")?.into_vector_value()
            }
            // A lane-invariant condition selecting between vectors.
            Expr::Select(c, x, y) if !depends_on(c, var) => {
                let c = self.int_expr(st, c)?;
                let c = self.truthy(st, c)?;
                let x = self.splat(st, self.float_expr(st, x)?, lanes)?;
                let y = self.splat(st, self.float_expr(st, y)?, lanes)?;
                b.build_select(c, x, y, "vsel")?.into_vector_value()
            }
            Expr::Fma(x, y, z) => {
                let x = self.splat(st, self.float_expr(st, x)?, lanes)?;
                let y = self.splat(st, self.float_expr(st, y)?, lanes)?;
                let z = self.splat(st, self.float_expr(st, z)?, lanes)?;
                let f = self.fma_decl(vt.into())?;
                b.build_call(f, &[x.into(), y.into(), z.into()], "vfma")?
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| err("fma returned void"))?
                    .into_vector_value()
            }
            // Gathers, lane-dependent selects: evaluate lane by lane and assemble the vector.
            _ => {
                let first_lane = st.vars[&var];
                let mut acc = vt.get_undef();
                let mut lane_state = FnState {
                    func: st.func,
                    builder: self.cx.create_builder(),
                    runtime: st.runtime,
                    vars: st.vars.clone(),
                    bufs: st.bufs.clone(),
                    vector: None,
                    in_parallel: st.in_parallel,
                };
                let bb = b.get_insert_block().ok_or_else(|| err("no insert block"))?;
                lane_state.builder.position_at_end(bb);
                for lane in 0..lanes {
                    let lv = lane_state.builder.build_int_add(
                        first_lane,
                        self.t.i64.const_int(lane as u64, false),
                        "lane",
                    )?;
                    lane_state.vars.insert(var, lv);
                    let s = self.scalar(&lane_state, e)?;
                    acc = lane_state.builder.build_insert_element(
                        acc,
                        s,
                        self.t.i64.const_int(lane as u64, false),
                        "gather",
                    )?;
                }
                // Continue emitting after what the lane builder appended.
                if let Some(end) = lane_state.builder.get_insert_block() {
                    st.builder.position_at_end(end);
                }
                acc
            }
        };
        Ok(Val::Vector(v))
    }
}

fn const_extent(l: &Loop) -> Result<i64> {
    l.extent.as_int().ok_or_else(|| err(format!("{:?} loop with a non-constant extent", l.kind)))
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn is_float(e: &Expr) -> bool {
    match e {
        Expr::Float(_) | Expr::Fma(..) | Expr::Load { .. } | Expr::Unary(..) => true,
        Expr::Int(_) | Expr::Var(_) | Expr::Cmp(..) | Expr::And(..) => false,
        Expr::Bin(_, x, _) => is_float(x),
        Expr::Select(_, x, _) => is_float(x),
    }
}

fn int_pred(op: CmpOp) -> IntPredicate {
    match op {
        CmpOp::Lt => IntPredicate::SLT,
        CmpOp::Le => IntPredicate::SLE,
        CmpOp::Eq => IntPredicate::EQ,
        CmpOp::Ne => IntPredicate::NE,
        CmpOp::Ge => IntPredicate::SGE,
        CmpOp::Gt => IntPredicate::SGT,
    }
}

fn float_pred(op: CmpOp) -> FloatPredicate {
    match op {
        CmpOp::Lt => FloatPredicate::OLT,
        CmpOp::Le => FloatPredicate::OLE,
        CmpOp::Eq => FloatPredicate::OEQ,
        CmpOp::Ne => FloatPredicate::UNE,
        CmpOp::Ge => FloatPredicate::OGE,
        CmpOp::Gt => FloatPredicate::OGT,
    }
}

/// Whether `e` reads variable `var` (directly or through a load index).
pub(crate) fn depends_on(e: &Expr, var: VarId) -> bool {
    match e {
        Expr::Int(_) | Expr::Float(_) => false,
        Expr::Var(v) => *v == var,
        Expr::Unary(_, a) => depends_on(a, var),
        Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) => depends_on(a, var) || depends_on(b, var),
        Expr::Fma(a, b, c) | Expr::Select(a, b, c) => {
            depends_on(a, var) || depends_on(b, var) || depends_on(c, var)
        }
        Expr::Load { index, .. } => depends_on(index, var),
    }
}

/// The constant `c` such that `e = c·var + (terms without var)`, if `e` is affine in `var`.
pub(crate) fn linear_coeff(e: &Expr, var: VarId) -> Option<i64> {
    if !depends_on(e, var) {
        return Some(0);
    }
    match e {
        Expr::Var(v) if *v == var => Some(1),
        Expr::Bin(BinOp::Add, a, b) => Some(linear_coeff(a, var)? + linear_coeff(b, var)?),
        Expr::Bin(BinOp::Sub, a, b) => Some(linear_coeff(a, var)? - linear_coeff(b, var)?),
        Expr::Bin(BinOp::Mul, a, b) => match (a.as_int(), b.as_int()) {
            (Some(k), _) => Some(k * linear_coeff(b, var)?),
            (_, Some(k)) => Some(k * linear_coeff(a, var)?),
            _ => None,
        },
        _ => None,
    }
}
