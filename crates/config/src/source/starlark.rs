//! Starlark evaluation (starlark-rust): the module must define `main(ctx)` returning a dict;
//! `ctx` is a dict of strings. `load()` is refused (no loader), `print` output is dropped, and a
//! statement budget plus a deadline ([`EvalLimits`]) stop runaway loops.

use std::time::Instant;

use starlark::PrintHandler;
use starlark::codemap::FileSpanRef;
use starlark::environment::{Globals, LibraryExtension, Module};
use starlark::eval::{BeforeStmtFuncDyn, Evaluator};
use starlark::syntax::{AstModule, Dialect};
use starlark::values::dict::{AllocDict, DictRef};
use starlark::values::list::ListRef;
use starlark::values::tuple::TupleRef;

use super::{EvalLimits, invalid};
use crate::context::RefContext;
use crate::error::{Error, Result};
use crate::node::{Key, Kind, MAX_DEPTH, Node};

#[derive(Debug, thiserror::Error)]
#[error("starlark config exceeded its execution budget ({0})")]
struct BudgetExceeded(&'static str);

struct Budget {
    statements: u64,
    max_statements: u64,
    deadline: Instant,
}

impl<'a, 'e: 'a> BeforeStmtFuncDyn<'a, 'e> for Budget {
    fn call<'v>(
        &mut self,
        _span: FileSpanRef,
        _eval: &mut Evaluator<'v, 'a, 'e>,
    ) -> starlark::Result<()> {
        self.statements += 1;
        if self.statements > self.max_statements {
            return Err(starlark::Error::new_other(BudgetExceeded(
                "too many statements",
            )));
        }
        // the clock is read every 1024 statements: cheap, and still prompt
        if self.statements.is_multiple_of(1024) && Instant::now() > self.deadline {
            return Err(starlark::Error::new_other(BudgetExceeded("time limit")));
        }
        Ok(())
    }
}

struct Discard;

impl PrintHandler for Discard {
    fn println(&self, _text: &str) -> starlark::Result<()> {
        Ok(())
    }
}

fn starlark_error(e: &starlark::Error) -> Error {
    let pos = e.span().map(|s| s.resolve_span().begin);
    invalid(
        format!("starlark error: {}", e.without_diagnostic()),
        pos.map(|p| p.line + 1),
        pos.map(|p| p.column + 1),
    )
}

/// Evaluates a Starlark config into the document tree.
pub(super) fn evaluate(text: &str, ctx: &RefContext, limits: &EvalLimits) -> Result<Node> {
    let ast = AstModule::parse("config.star", text.to_owned(), &Dialect::Standard)
        .map_err(|e| starlark_error(&e))?;
    let globals = Globals::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::Json,
        LibraryExtension::Map,
        LibraryExtension::Filter,
        LibraryExtension::Partial,
        LibraryExtension::Print,
    ]);
    let module = Module::new();
    let discard = Discard;
    let mut eval = Evaluator::new(&module);
    eval.set_print_handler(&discard);
    eval.set_max_callstack_size(limits.max_call_depth)
        .map_err(|e| invalid(format!("starlark setup: {e}"), None, None))?;
    let budget: Box<dyn BeforeStmtFuncDyn<'_, '_>> = Box::new(Budget {
        statements: 0,
        max_statements: limits.max_statements,
        deadline: Instant::now() + limits.timeout,
    });
    eval.before_stmt_for_dap(budget.into());
    eval.eval_module(ast, &globals)
        .map_err(|e| starlark_error(&e))?;
    let Some(main) = module.get("main") else {
        return Err(invalid("starlark config must define main(ctx)", None, None));
    };
    let heap = module.heap();
    let ctx_value = heap.alloc(AllocDict(ctx.fields()));
    let result = eval
        .eval_function(main, &[ctx_value], &[])
        .map_err(|e| starlark_error(&e))?;
    if DictRef::from_value(result).is_none() {
        return Err(invalid(
            format!(
                "starlark main(ctx) must return a dict, not {}",
                result.get_type()
            ),
            None,
            None,
        ));
    }
    to_node(result, 0).map_err(|m| invalid(m, None, None))
}

/// Converts the result without `to_json`, whose recursion has no depth limit.
fn to_node(v: starlark::values::Value<'_>, depth: usize) -> std::result::Result<Node, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "starlark result is nested deeper than {MAX_DEPTH} levels"
        ));
    }
    let kind = if v.is_none() {
        Kind::Null
    } else if let Some(b) = v.unpack_bool() {
        Kind::Bool(b)
    } else if let Some(s) = v.unpack_str() {
        Kind::Str(s.to_owned())
    } else if matches!(v.get_type(), "int" | "float") {
        Kind::Number(v.to_json().map_err(|e| format!("starlark number: {e}"))?)
    } else if let Some(d) = DictRef::from_value(v) {
        let mut entries = Vec::with_capacity(d.len());
        for (k, val) in d.iter() {
            let Some(name) = k.unpack_str() else {
                return Err(format!(
                    "starlark result has a dict key of type {}; keys must be strings",
                    k.get_type()
                ));
            };
            entries.push((
                Key {
                    name: name.to_owned(),
                    pos: None,
                },
                to_node(val, depth + 1)?,
            ));
        }
        Kind::Map(entries)
    } else if let Some(l) = ListRef::from_value(v) {
        Kind::Seq(
            l.iter()
                .map(|i| to_node(i, depth + 1))
                .collect::<std::result::Result<_, _>>()?,
        )
    } else if let Some(t) = TupleRef::from_value(v) {
        Kind::Seq(
            t.iter()
                .map(|i| to_node(i, depth + 1))
                .collect::<std::result::Result<_, _>>()?,
        )
    } else {
        return Err(format!(
            "starlark result holds a value of type {}; only dicts, lists, strings, numbers, booleans and None are allowed",
            v.get_type()
        ));
    };
    Ok(Node::new(kind, None))
}
