//! The runtime cost budget of policy expressions: Kubernetes cancels an expression whose
//! actual cost passes a per-expression limit ("operation cancelled: actual cost limit
//! exceeded"), so that a runaway comprehension over big lists fails the request per
//! `failurePolicy` instead of burning the server's CPU.
//!
//! The `cel` crate counts no cost, so berth meters what makes an expression's cost grow
//! beyond its size: comprehension iterations (`all`, `exists`, `exists_one`, `map`,
//! `filter`, nested or not). [`meter`] rewrites a compiled expression once so that every
//! iteration first calls [`COST_FUNCTION`] with the number of nodes the iteration evaluates
//! (its loop condition and step, a nested comprehension counted once: its own iterations
//! charge themselves), and [`Budget`] adds these up against [`PER_EXPRESSION_LIMIT`], the
//! limit Kubernetes sets (`PerCallLimit`), failing the call that passes it. The rewrite keeps
//! the shapes the interpreter optimises (`map`/`filter` appending in place, `all`/`exists`
//! folding errors as cel-go does). Not counted: the cost of string and list functions
//! (`split`, `join`, regular expressions) on long inputs, and the static cost estimate
//! Kubernetes checks when a policy is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cel::common::ast::{CallExpr, EntryExpr, Expr as E, IdedExpr, LiteralValue, operators};
use cel::common::types::{CelBool, CelInt};

/// The function every metered iteration calls; `@` names cannot be written in CEL source.
pub(crate) const COST_FUNCTION: &str = "@cost";

/// Kubernetes' `PerCallLimit`: the cost one expression may spend.
pub(crate) const PER_EXPRESSION_LIMIT: u64 = 1_000_000;

/// Kubernetes' message for an expression cancelled by its budget.
pub(crate) const EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

/// The cost spent by the expression being evaluated, shared with the context's
/// [`COST_FUNCTION`].
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    spent: AtomicU64,
    exceeded: AtomicBool,
}

impl Budget {
    /// A budget of `limit` per expression.
    pub(crate) fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget { limit, spent: AtomicU64::new(0), exceeded: AtomicBool::new(false) })
    }

    /// Starts an expression's evaluation with its whole budget.
    pub(crate) fn reset(&self) {
        self.spent.store(0, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    /// Whether the expression evaluated since [`Budget::reset`] passed its limit (an error
    /// inside `all`/`exists` may be absorbed by a later element: this is what tells).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Charges `cost`: `true` while within the limit.
    pub(crate) fn charge(&self, cost: u64) -> bool {
        let spent = self.spent.fetch_add(cost, Ordering::Relaxed).saturating_add(cost);
        if spent > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Registers [`COST_FUNCTION`] on the root context `cx`, charging `budget`.
pub(crate) fn bind(cx: &mut cel::Context<'_, '_>, budget: Arc<Budget>) {
    let charge = move |cost: i64| -> Result<bool, cel::ExecutionError> {
        if budget.charge(u64::try_from(cost).unwrap_or(0)) {
            Ok(true)
        } else {
            Err(cel::ExecutionError::function_error(COST_FUNCTION, EXCEEDED))
        }
    };
    // The name cannot clash with a declared overload ('@' is not in CEL's identifiers).
    let _ = cx.add_function(COST_FUNCTION, charge);
}

/// `e` with every comprehension metered.
pub(crate) fn meter(e: &IdedExpr) -> IdedExpr {
    let mut e = e.clone();
    rewrite(&mut e);
    e
}

fn rewrite(e: &mut IdedExpr) {
    match &mut e.expr {
        E::Call(call) => {
            if let Some(target) = &mut call.target {
                rewrite(target);
            }
            call.args.iter_mut().for_each(rewrite);
        }
        E::Select(select) => rewrite(&mut select.operand),
        E::List(list) => list.elements.iter_mut().for_each(rewrite),
        E::Map(map) => map.entries.iter_mut().for_each(|entry| rewrite_entry(&mut entry.expr)),
        E::Struct(st) => st.entries.iter_mut().for_each(|entry| rewrite_entry(&mut entry.expr)),
        E::Comprehension(c) => {
            let weight = 1 + nodes(&c.loop_cond) + nodes(&c.loop_step);
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                rewrite(part);
            }
            let accu = c.accu_var.clone();
            if matches!(c.loop_cond.expr, E::Literal(_)) && charge_in_step(&mut c.loop_step, &accu, weight) {
                return;
            }
            guard(&mut c.loop_cond, weight);
        }
        E::Ident(_) | E::Literal(_) | E::Unspecified => {}
    }
}

fn rewrite_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::StructField(f) => rewrite(&mut f.value),
        EntryExpr::MapEntry(m) => {
            rewrite(&mut m.key);
            rewrite(&mut m.value);
        }
    }
}

/// The nodes one evaluation of `e` visits at most, a nested comprehension counted once.
fn nodes(e: &IdedExpr) -> u64 {
    let entries = |list: &[cel::common::ast::IdedEntryExpr]| -> u64 {
        list.iter()
            .map(|entry| match &entry.expr {
                EntryExpr::StructField(f) => nodes(&f.value),
                EntryExpr::MapEntry(m) => nodes(&m.key) + nodes(&m.value),
            })
            .sum()
    };
    1 + match &e.expr {
        E::Call(call) => call.target.as_deref().map_or(0, nodes) + call.args.iter().map(nodes).sum::<u64>(),
        E::Select(select) => nodes(&select.operand),
        E::List(list) => list.elements.iter().map(nodes).sum(),
        E::Map(map) => entries(&map.entries),
        E::Struct(st) => entries(&st.entries),
        E::Comprehension(c) => nodes(&c.iter_range) + nodes(&c.accu_init) + nodes(&c.result),
        E::Ident(_) | E::Literal(_) | E::Unspecified => 0,
    }
}

/// Makes `e` `@cost(weight) ? e : false` (the conditional evaluates `e` in place, its value
/// not copied).
fn guard(e: &mut IdedExpr, weight: u64) {
    let inner = std::mem::take(e);
    *e = call(
        operators::CONDITIONAL,
        vec![call_cost(weight), inner, literal(LiteralValue::Boolean(CelBool::from(false)))],
    );
}

/// The `map`/`filter` shapes, whose loop condition is a literal: `@result + [x]` (the
/// appended element charged) or `cond ? @result + [x] : @result` (the condition charged).
/// False when the step has another shape.
fn charge_in_step(step: &mut IdedExpr, accu: &str, weight: u64) -> bool {
    let is_accu = |e: &IdedExpr| matches!(&e.expr, E::Ident(name) if name == accu);
    let E::Call(step) = &mut step.expr else { return false };
    if step.target.is_some() {
        return false;
    }
    match (step.func_name.as_str(), step.args.as_mut_slice()) {
        (operators::ADD, [lhs, rhs]) if is_accu(lhs) => match &mut rhs.expr {
            E::List(list) if list.elements.len() == 1 => {
                let element = &mut list.elements[0];
                let inner = std::mem::take(element);
                *element = call(operators::CONDITIONAL, vec![call_cost(weight), inner, literal(LiteralValue::Null)]);
                true
            }
            _ => false,
        },
        (operators::CONDITIONAL, [cond, _, otherwise]) if is_accu(otherwise) => {
            guard(cond, weight);
            true
        }
        _ => false,
    }
}

fn call_cost(weight: u64) -> IdedExpr {
    call(COST_FUNCTION, vec![literal(LiteralValue::Int(CelInt::from(i64::try_from(weight).unwrap_or(i64::MAX))))])
}

fn call(name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    IdedExpr { id: 0, expr: E::Call(CallExpr { func_name: name.to_string(), target: None, args }) }
}

fn literal(value: LiteralValue) -> IdedExpr {
    IdedExpr { id: 0, expr: E::Literal(value) }
}
